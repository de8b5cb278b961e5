//! `KeyCache`: the gateway's [`KeyStore`], served from memory. Database keys (`sk-<public
//! id><secret>`) are looked up by their public id and checked by comparing HMAC hashes in
//! constant time, then for expiry; the cache holds only keys the store lists as active, and is
//! reloaded on change notifications (see `sync`). The single `PROXY_API_KEY` keeps working
//! beside them, and `ADMIN_API_KEY` or a database admin key opens `/admin`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use chrono::Utc;
use kiro_layers::auth::SingleKeyStore;
use kiro_layers::store::{ApiKeyRow, KeyKind, Timestamp};
use kiro_layers::traits::{KeyStore, Principal};
use kiro_layers::GatewayError;
use subtle::ConstantTimeEq;

/// Hashes a presented secret the way the store hashed it at creation (HMAC-SHA256 with the
/// server secret).
pub type KeyHasher = Arc<dyn Fn(&str) -> Vec<u8> + Send + Sync>;

#[derive(Clone)]
struct CachedKey {
    id: i64,
    kind: KeyKind,
    user_id: Option<i64>,
    agent_id: Option<i64>,
    hash: Vec<u8>,
    expires_at: Option<Timestamp>,
    allowed_models: Vec<String>,
}

/// Who called an API, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// `ADMIN_API_KEY`.
    RootAdmin,
    /// The command line (`kiro-gateway admin-key create`, ...).
    Cli,
    /// A database admin key (by key id).
    Admin(i64),
    /// An agent key.
    Agent {
        /// Key id.
        key_id: i64,
        /// The agent.
        agent_id: i64,
    },
    /// A user's inference key.
    User {
        /// Key id.
        key_id: i64,
        /// The user.
        user_id: i64,
    },
}

impl Caller {
    /// Names the caller in the audit log (never a secret).
    pub fn actor(&self) -> String {
        match self {
            Caller::RootAdmin => "admin:env".to_owned(),
            Caller::Cli => "cli".to_owned(),
            Caller::Admin(id) => format!("admin:key:{id}"),
            Caller::Agent { agent_id, .. } => format!("agent:{agent_id}"),
            Caller::User { user_id, .. } => format!("user:{user_id}"),
        }
    }

    /// The admin caller [`Caller::actor`] named (a sign-in flow keeps its starter this way, so
    /// that whichever process finishes it audits the right admin); `None` for anything else.
    pub fn admin_from_actor(actor: &str) -> Option<Caller> {
        match actor {
            "admin:env" => Some(Caller::RootAdmin),
            "cli" => Some(Caller::Cli),
            other => other
                .strip_prefix("admin:key:")
                .and_then(|id| id.parse().ok())
                .map(Caller::Admin),
        }
    }
}

/// See the module docs. Cheap to clone.
#[derive(Clone)]
pub struct KeyCache {
    keys: Arc<RwLock<HashMap<String, CachedKey>>>,
    proxy: Option<SingleKeyStore>,
    admin: Option<SingleKeyStore>,
    hasher: KeyHasher,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyCache(<redacted>)")
    }
}

fn unauthenticated() -> GatewayError {
    GatewayError::unauthenticated(
        "Invalid API key. Send a key issued by this gateway as `Authorization: Bearer <key>` or `x-api-key: <key>`.",
    )
}

/// The public id inside a presented `sk-` key (the store's format).
fn public_id_of(presented: &str) -> Option<&str> {
    crate::store::crypto::public_id_of(presented)
        .filter(|id| id.chars().all(|c| c.is_ascii_alphanumeric()))
}

impl KeyCache {
    /// A cache accepting `proxy_key` (if any) for inference and `admin_key` (if any) for
    /// `/admin`, plus whatever [`KeyCache::replace`] loads.
    pub fn new(proxy_key: Option<&str>, admin_key: Option<&str>, hasher: KeyHasher) -> Self {
        let nonempty = |k: Option<&str>| k.filter(|k| !k.is_empty()).map(SingleKeyStore::new);
        KeyCache {
            keys: Arc::new(RwLock::new(HashMap::new())),
            proxy: nonempty(proxy_key),
            admin: nonempty(admin_key),
            hasher,
        }
    }

    /// Replaces the cached keys with `rows` (the store's active keys).
    pub fn replace(&self, rows: Vec<ApiKeyRow>) {
        let map = rows
            .into_iter()
            .map(|row| {
                let key = CachedKey {
                    id: row.id,
                    kind: row.kind,
                    user_id: row.user_id,
                    agent_id: row.agent_id,
                    hash: row.secret_hash,
                    expires_at: row.expires_at,
                    allowed_models: row.allowed_models,
                };
                (row.public_id, key)
            })
            .collect();
        if let Ok(mut keys) = self.keys.write() {
            *keys = map;
        }
    }

    /// Number of cached database keys.
    pub fn len(&self) -> usize {
        self.keys.read().map_or(0, |k| k.len())
    }

    /// True when no database key is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The database key `presented` stands for, checked (hash, expiry), whatever its kind.
    fn lookup(&self, presented: &str) -> Option<CachedKey> {
        let public_id = public_id_of(presented)?;
        let key = self.keys.read().ok()?.get(public_id).cloned()?;
        let hash = (self.hasher)(presented);
        if !bool::from(hash.as_slice().ct_eq(key.hash.as_slice())) {
            return None;
        }
        if key.expires_at.is_some_and(|at| at <= Utc::now()) {
            return None;
        }
        Some(key)
    }

    /// True when `ADMIN_API_KEY` is configured.
    pub fn has_root_admin(&self) -> bool {
        self.admin.is_some()
    }

    /// The caller a database key stands for, by key id, while that key is active and
    /// unexpired: a web console session opened with a key lives exactly as long as the key.
    pub fn caller_by_key_id(&self, key_id: i64) -> Option<Caller> {
        let keys = self.keys.read().ok()?;
        let key = keys.values().find(|k| k.id == key_id)?;
        if key.expires_at.is_some_and(|at| at <= Utc::now()) {
            return None;
        }
        match (key.kind, key.user_id, key.agent_id) {
            (KeyKind::Admin, _, _) => Some(Caller::Admin(key.id)),
            (KeyKind::Agent, _, Some(agent_id)) => Some(Caller::Agent {
                key_id: key.id,
                agent_id,
            }),
            (KeyKind::Inference, Some(user_id), _) => Some(Caller::User {
                key_id: key.id,
                user_id,
            }),
            _ => None,
        }
    }

    /// Authenticates an `/admin` caller.
    pub fn admin(&self, presented: &str) -> Result<Caller, GatewayError> {
        if let Some(admin) = &self.admin {
            if admin.authenticate(presented).is_ok() {
                return Ok(Caller::RootAdmin);
            }
        }
        match self.lookup(presented) {
            Some(key) if key.kind == KeyKind::Admin => Ok(Caller::Admin(key.id)),
            Some(_) => Err(GatewayError::permission_denied(
                "This key is not an admin key.",
            )),
            None => Err(unauthenticated()),
        }
    }

    /// Authenticates an `/agent` caller.
    pub fn agent(&self, presented: &str) -> Result<Caller, GatewayError> {
        match self.lookup(presented) {
            Some(CachedKey {
                id,
                kind: KeyKind::Agent,
                agent_id: Some(agent_id),
                ..
            }) => Ok(Caller::Agent {
                key_id: id,
                agent_id,
            }),
            Some(_) => Err(GatewayError::permission_denied(
                "This key is not an agent key.",
            )),
            None => Err(unauthenticated()),
        }
    }

    /// Authenticates a `/user` caller (a user's own inference key).
    pub fn user(&self, presented: &str) -> Result<Caller, GatewayError> {
        match self.lookup(presented) {
            Some(CachedKey {
                id,
                kind: KeyKind::Inference,
                user_id: Some(user_id),
                ..
            }) => Ok(Caller::User {
                key_id: id,
                user_id,
            }),
            Some(_) => Err(GatewayError::permission_denied(
                "This key does not belong to a user.",
            )),
            None => Err(unauthenticated()),
        }
    }
}

impl KeyStore for KeyCache {
    fn authenticate(&self, presented_key: &str) -> Result<Principal, GatewayError> {
        if let Some(proxy) = &self.proxy {
            if let Ok(principal) = proxy.authenticate(presented_key) {
                return Ok(principal);
            }
        }
        match self.lookup(presented_key) {
            Some(key) if key.kind == KeyKind::Inference => Ok(Principal {
                key_id: key.id.to_string(),
                user_id: key.user_id.map(|id| id.to_string()),
                agent_id: key.agent_id.map(|id| id.to_string()),
                allowed_models: key.allowed_models,
            }),
            Some(_) => Err(GatewayError::permission_denied(
                "This key is for the management API, not for inference; create an inference key.",
            )),
            None => Err(unauthenticated()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiro_layers::store::KeyStatus;
    use sha2::{Digest, Sha256};

    fn hasher() -> KeyHasher {
        Arc::new(|s: &str| Sha256::digest(format!("pepper{s}").as_bytes()).to_vec())
    }

    fn row(public_id: &str, secret: &str, kind: KeyKind) -> ApiKeyRow {
        ApiKeyRow {
            id: 7,
            public_id: public_id.into(),
            kind,
            user_id: Some(3),
            agent_id: Some(2),
            name: "k".into(),
            secret_hash: hasher()(secret),
            suffix: "xxxx".into(),
            status: KeyStatus::Active,
            expires_at: None,
            allowed_models: vec!["claude-sonnet-4.5".into()],
            rpm_limit: None,
            max_concurrency: None,
            quota_limit: None,
            quota_used: 0,
            created_at: Utc::now(),
            last_used_at: None,
        }
    }

    const KEY: &str = "sk-abcdefghijkl0123456789secret";

    #[test]
    fn database_keys_authenticate_by_hash() {
        let cache = KeyCache::new(Some("proxy"), Some("root"), hasher());
        cache.replace(vec![row("abcdefghijkl", KEY, KeyKind::Inference)]);
        let p = cache.authenticate(KEY).unwrap();
        assert_eq!(p.key_id, "7");
        assert_eq!(p.user_id.as_deref(), Some("3"));
        assert_eq!(p.allowed_models, ["claude-sonnet-4.5"]);
        assert_eq!(cache.authenticate("proxy").unwrap().key_id, "proxy-api-key");
        // Same public id, other secret.
        assert!(cache
            .authenticate("sk-abcdefghijkl0123456789secreT")
            .unwrap_err()
            .is_unauthenticated());
        assert!(cache.authenticate("sk-").is_err());
        assert!(cache.authenticate("sk-ab'; DROP TABLE--").is_err());
        assert_eq!(
            cache.user(KEY).unwrap(),
            Caller::User {
                key_id: 7,
                user_id: 3
            }
        );
        assert_eq!(cache.admin(KEY).unwrap_err().status(), 403);
        assert_eq!(cache.admin("root").unwrap(), Caller::RootAdmin);
        // Revoked (no longer listed) keys stop working on reload.
        cache.replace(vec![]);
        assert!(cache.authenticate(KEY).is_err());
    }

    #[test]
    fn expired_keys_and_wrong_kinds_are_refused() {
        let cache = KeyCache::new(None, None, hasher());
        let mut expired = row("abcdefghijkl", KEY, KeyKind::Inference);
        expired.expires_at = Some(Utc::now() - chrono::Duration::seconds(1));
        cache.replace(vec![expired]);
        assert!(cache.authenticate(KEY).unwrap_err().is_unauthenticated());
        cache.replace(vec![row("abcdefghijkl", KEY, KeyKind::Admin)]);
        assert_eq!(cache.authenticate(KEY).unwrap_err().status(), 403);
        assert_eq!(cache.admin(KEY).unwrap(), Caller::Admin(7));
        assert!(cache.admin("").is_err());
        cache.replace(vec![row("abcdefghijkl", KEY, KeyKind::Agent)]);
        assert_eq!(
            cache.agent(KEY).unwrap(),
            Caller::Agent {
                key_id: 7,
                agent_id: 2
            }
        );
    }
}
