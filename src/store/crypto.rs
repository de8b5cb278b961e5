//! Secrets at rest and API key hashing.
//!
//! One 32-byte server secret is the root of both:
//! - **Encryption** of refresh tokens and client secrets: AES-256-GCM with the secret as key, a
//!   random 96-bit nonce per value (stored as `nonce || ciphertext || tag`), and the column name
//!   as associated data, so a value copied into another column does not decrypt.
//! - **API key hashing**: HMAC-SHA256 of the full key under a sub-key derived from the secret
//!   (`HMAC(secret, "kiro-gateway api key v1")`), so the encryption key never hashes anything.
//!
//! Where the secret comes from ([`Secret::load`]): `KIRO_GATEWAY_SECRET` if set — 64 hex
//! characters or base64 of exactly 32 bytes are used as the key itself; any other text is a
//! passphrase and its SHA-256 is the key. Otherwise a key file (default `kiro-gateway.key`),
//! created with 0600 permissions on first start (64 hex characters) and reused afterwards.

use std::io::Write;
use std::path::Path;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const NONCE_LEN: usize = 12;
const KEY_PREFIX: &str = "sk-";
/// Length of the public part of an API key.
pub const PUBLIC_ID_LEN: usize = 12;
const SECRET_PART_LEN: usize = 32;
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// The server secret. Never logged: `Debug` prints nothing of it.
#[derive(Clone)]
pub struct Secret {
    key: [u8; 32],
    hash_key: [u8; 32],
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Where [`Secret::load`] found the secret (for a start-up log line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretSource {
    /// `KIRO_GATEWAY_SECRET` holding 32 bytes in hex or base64.
    EnvKey,
    /// `KIRO_GATEWAY_SECRET` holding a passphrase (SHA-256 hashed).
    EnvPassphrase,
    /// An existing key file.
    KeyFile,
    /// A key file created just now.
    NewKeyFile,
}

impl Secret {
    /// A secret from 32 raw bytes.
    pub fn from_bytes(key: [u8; 32]) -> Self {
        let mut mac = hmac_sha256(&key);
        mac.update(b"kiro-gateway api key v1");
        let hash_key: [u8; 32] = mac.finalize().into_bytes().into();
        Secret { key, hash_key }
    }

    /// Parses the value of `KIRO_GATEWAY_SECRET` (see the module docs).
    pub fn from_text(text: &str) -> (Self, SecretSource) {
        let text = text.trim();
        if text.len() == 64 {
            if let Ok(bytes) = hex::decode(text) {
                if let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice()) {
                    return (Secret::from_bytes(key), SecretSource::EnvKey);
                }
            }
        }
        if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(text) {
            if let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice()) {
                return (Secret::from_bytes(key), SecretSource::EnvKey);
            }
        }
        let key: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        (Secret::from_bytes(key), SecretSource::EnvPassphrase)
    }

    /// `KIRO_GATEWAY_SECRET` if set and not empty, else the key file at `key_file` (created
    /// with 0600 permissions when missing).
    pub fn load(key_file: &Path) -> Result<(Self, SecretSource), String> {
        if let Ok(text) = std::env::var("KIRO_GATEWAY_SECRET") {
            if !text.trim().is_empty() {
                return Ok(Secret::from_text(&text));
            }
        }
        Secret::from_key_file(key_file)
    }

    /// Reads the key file, or creates it with a random key.
    pub fn from_key_file(path: &Path) -> Result<(Self, SecretSource), String> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let bytes = hex::decode(text.trim())
                    .map_err(|_| format!("{} must hold 64 hex characters", path.display()))?;
                let key = <[u8; 32]>::try_from(bytes.as_slice())
                    .map_err(|_| format!("{} must hold 64 hex characters", path.display()))?;
                Ok((Secret::from_bytes(key), SecretSource::KeyFile))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key: [u8; 32] = rand::thread_rng().gen();
                write_private(path, hex::encode(key).as_bytes())?;
                Ok((Secret::from_bytes(key), SecretSource::NewKeyFile))
            }
            Err(e) => Err(format!("could not read {}: {e}", path.display())),
        }
    }

    /// Encrypts `plaintext` for the column named `column`.
    pub fn encrypt(&self, column: &str, plaintext: &str) -> Vec<u8> {
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&self.key));
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let payload = Payload {
            msg: plaintext.as_bytes(),
            aad: column.as_bytes(),
        };
        // Encryption only fails for inputs over 64 GiB; an empty output would then fail to
        // decrypt loudly rather than store plaintext.
        let sealed = cipher.encrypt(&nonce, payload).unwrap_or_default();
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Decrypts a value written by [`Secret::encrypt`] for the same column.
    pub fn decrypt(&self, column: &str, sealed: &[u8]) -> Result<String, String> {
        if sealed.len() < NONCE_LEN {
            return Err(format!("{column}: encrypted value is truncated"));
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&self.key));
        let payload = Payload {
            msg: body,
            aad: column.as_bytes(),
        };
        let plain = cipher.decrypt(Nonce::from_slice(nonce), payload).map_err(|_| {
            format!(
                "{column}: cannot decrypt (was the database written with another KIRO_GATEWAY_SECRET or key file?)"
            )
        })?;
        String::from_utf8(plain).map_err(|_| format!("{column}: decrypted value is not UTF-8"))
    }
}

fn hmac_sha256(key: &[u8; 32]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail (not input-dependent).
    #[allow(clippy::expect_used)]
    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length")
}

fn write_private(path: &Path, contents: &[u8]) -> Result<(), String> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| format!("could not create the key file {}: {e}", path.display()))?;
    file.write_all(contents)
        .and_then(|_| file.sync_all())
        .map_err(|e| format!("could not write the key file {}: {e}", path.display()))
}

/// HMAC-SHA256 of a full API key under the server secret.
pub fn hash_api_key(secret: &Secret, key: &str) -> [u8; 32] {
    let mut mac = hmac_sha256(&secret.hash_key);
    mac.update(key.as_bytes());
    mac.finalize().into_bytes().into()
}

/// True when `presented` hashes to `stored_hash` (constant time).
pub fn verify_api_key(secret: &Secret, presented: &str, stored_hash: &[u8]) -> bool {
    let hash = hash_api_key(secret, presented);
    bool::from(hash.as_slice().ct_eq(stored_hash))
}

/// A new API key: (`sk-<public_id><secret part>`, public id). Show the full key once; store
/// the public id, [`hash_api_key`] and the last 4 characters.
pub fn generate_api_key() -> (String, String) {
    let public_id = random_text(PUBLIC_ID_LEN);
    let key = format!("{KEY_PREFIX}{public_id}{}", random_text(SECRET_PART_LEN));
    (key, public_id)
}

/// The public id of a presented key, if it has the `sk-` shape.
pub fn public_id_of(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(KEY_PREFIX)?;
    if rest.len() <= PUBLIC_ID_LEN || !rest.is_ascii() {
        return None;
    }
    Some(&rest[..PUBLIC_ID_LEN])
}

/// The last 4 characters of a key, for display.
pub fn key_suffix(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    chars[chars.len().saturating_sub(4)..].iter().collect()
}

fn random_text(len: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypt_round_trips_and_binds_the_column() {
        let secret = Secret::from_bytes([7; 32]);
        let sealed = secret.encrypt("accounts.refresh_token", "aorAAAA-token");
        assert!(!sealed.windows(5).any(|w| w == b"aorAA"));
        assert_eq!(
            secret.decrypt("accounts.refresh_token", &sealed).unwrap(),
            "aorAAAA-token"
        );
        assert!(secret.decrypt("accounts.client_secret", &sealed).is_err());
        assert!(Secret::from_bytes([8; 32])
            .decrypt("accounts.refresh_token", &sealed)
            .is_err());
    }

    #[test]
    fn secret_text_forms() {
        let hex_key = "11".repeat(32);
        assert_eq!(Secret::from_text(&hex_key).1, SecretSource::EnvKey);
        let b64 = base64::engine::general_purpose::STANDARD.encode([3u8; 32]);
        assert_eq!(Secret::from_text(&b64).1, SecretSource::EnvKey);
        assert_eq!(
            Secret::from_text("correct horse battery").1,
            SecretSource::EnvPassphrase
        );
        // The same hex key read twice hashes keys identically.
        let a = Secret::from_text(&hex_key).0;
        let b = Secret::from_text(&hex_key).0;
        assert_eq!(hash_api_key(&a, "sk-x"), hash_api_key(&b, "sk-x"));
    }

    #[test]
    fn key_file_is_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kiro-gateway.key");
        let (first, source) = Secret::from_key_file(&path).unwrap();
        assert_eq!(source, SecretSource::NewKeyFile);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (second, source) = Secret::from_key_file(&path).unwrap();
        assert_eq!(source, SecretSource::KeyFile);
        assert_eq!(hash_api_key(&first, "k"), hash_api_key(&second, "k"));
    }

    #[test]
    fn generated_keys_verify_and_expose_their_public_id() {
        let secret = Secret::from_bytes([1; 32]);
        let (key, public_id) = generate_api_key();
        assert!(key.starts_with("sk-"));
        assert_eq!(public_id.len(), PUBLIC_ID_LEN);
        assert_eq!(public_id_of(&key), Some(public_id.as_str()));
        let hash = hash_api_key(&secret, &key);
        assert!(verify_api_key(&secret, &key, &hash));
        assert!(!verify_api_key(&secret, &format!("{key}x"), &hash));
        assert_eq!(key_suffix(&key).len(), 4);
        assert_eq!(public_id_of("sk-short"), None);
        assert_ne!(generate_api_key().0, key);
    }
}
