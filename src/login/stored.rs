//! A sign-in flow as the store keeps it ([`LoginFlowRow`]): what callers see ([`FlowView`],
//! JSON), what continuing needs that is not secret ([`Plan`], JSON) and the secrets
//! ([`Secrets`], JSON the store encrypts at rest). Every process on the database reads and
//! writes flows through [`Record`]; writes are compare-and-set on the row's version, which is
//! also the version callers see.

use chrono::{DateTime, Utc};
use kiro_layers::store::LoginFlowRow;
use kiro_layers::GatewayError;
use serde::{Deserialize, Serialize};

use super::oidc::Registration;
use super::request::FlowView;
use super::social::Pkce;
use super::LoginTokens;
use crate::tenancy::keys::Caller;

/// What continuing a flow needs, without secrets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Plan {
    /// Who started it ([`Caller::actor`]): the audit entry of the new account names them.
    pub actor: String,
    /// The account's name, fixed when known (at the start, or when the address is pasted) so
    /// that a second attempt to store the same sign-in finds the first one's account.
    pub name: Option<String>,
    /// Leases at once for the account.
    pub max_concurrency: Option<u32>,
    /// Identity Center: take this profile without asking when the list has it.
    pub preferred_profile: Option<String>,
    /// The profile the account gets (set on entering `finishing`).
    pub profile_arn: Option<String>,
    /// The method label stored with the account (set on entering `finishing`).
    pub label: Option<String>,
    /// The stored account (`succeeded`).
    pub account_id: Option<i64>,
    /// When the flow started (an account found by name must be younger).
    pub started_at: DateTime<Utc>,
}

/// The secrets of a flow; encrypted at rest by the store, never logged.
#[derive(Default, Clone, Serialize, Deserialize)]
pub(super) struct Secrets {
    /// Device flows: proves the poller is the one that started.
    pub device_code: Option<String>,
    /// Builder ID and Identity Center: the registered client.
    pub client: Option<Registration>,
    /// The paste fallback's verifier and state.
    pub pkce: Option<Pkce>,
    /// Once signed in: the tokens to store.
    pub tokens: Option<LoginTokens>,
}

/// One flow read from the store.
#[derive(Clone)]
pub(super) struct Record {
    pub view: FlowView,
    pub plan: Plan,
    pub secrets: Secrets,
    pub finished_at: Option<DateTime<Utc>>,
}

fn corrupt(what: &str, error: serde_json::Error) -> GatewayError {
    GatewayError::internal(format!(
        "a stored sign-in has an unreadable {what}: {error}"
    ))
}

fn encode(what: &str, value: &impl Serialize) -> Result<String, GatewayError> {
    serde_json::to_string(value).map_err(|e| corrupt(what, e))
}

impl Record {
    /// Reads a stored row; the view's version is the row's.
    pub fn from_row(row: LoginFlowRow) -> Result<Self, GatewayError> {
        let mut view: FlowView = serde_json::from_str(&row.view).map_err(|e| corrupt("view", e))?;
        view.version = u64::try_from(row.version).unwrap_or_default();
        Ok(Record {
            view,
            plan: serde_json::from_str(&row.plan).map_err(|e| corrupt("plan", e))?,
            secrets: serde_json::from_str(&row.secrets).map_err(|e| corrupt("secret part", e))?,
            finished_at: row.finished_at,
        })
    }

    /// The row to write (owner and lease are the store's to set).
    pub fn to_row(&self) -> Result<LoginFlowRow, GatewayError> {
        let mut view = self.view.clone();
        // The account is kept as its id (in the plan) and read afresh for every view.
        view.account = None;
        Ok(LoginFlowRow {
            id: self.view.id.clone(),
            status: self.view.status.label(),
            version: i64::try_from(self.view.version).unwrap_or(i64::MAX),
            view: encode("view", &view)?,
            plan: encode("plan", &self.plan)?,
            secrets: encode("secret part", &self.secrets)?,
            expires_at: self.view.expires_at,
            finished_at: self.finished_at,
            owner: None,
            lease_until: None,
        })
    }

    /// The admin who started the flow.
    pub fn caller(&self) -> Caller {
        // Only admin callers start flows; an unreadable actor still audits as the CLI would
        // rather than failing a sign-in the user completed.
        Caller::admin_from_actor(&self.plan.actor).unwrap_or(Caller::Cli)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::login::request::{FlowStatus, LoginMethod};

    fn record() -> Record {
        Record {
            view: FlowView {
                id: "f1".into(),
                method: LoginMethod::IdentityCenter {
                    start_url: "https://d-1.awsapps.com/start".into(),
                    region: "eu-west-1".into(),
                },
                status: FlowStatus::SlowDown,
                version: 7,
                user_code: Some("ABCD-EFGH".into()),
                verification_uri: None,
                verification_uri_complete: None,
                sign_in_url: None,
                expires_at: Utc::now(),
                interval_seconds: Some(10),
                profiles: Vec::new(),
                account: None,
                error: None,
            },
            plan: Plan {
                actor: Caller::Admin(4).actor(),
                name: Some("team".into()),
                max_concurrency: Some(2),
                preferred_profile: None,
                profile_arn: None,
                label: None,
                account_id: None,
                started_at: Utc::now(),
            },
            secrets: Secrets {
                device_code: Some("dc-SECRET".into()),
                client: Some(Registration {
                    client_id: "cid".into(),
                    client_secret: "cs-SECRET".into(),
                    client_secret_expires_at: Some(1),
                }),
                pkce: None,
                tokens: None,
            },
            finished_at: None,
        }
    }

    #[test]
    fn a_record_reads_back_as_written_with_secrets_only_in_the_secret_part() {
        let row = record().to_row().unwrap();
        assert_eq!((row.status.as_str(), row.version), ("slow_down", 7));
        for public in [&row.view, &row.plan] {
            assert!(!public.contains("SECRET"), "{public}");
        }
        let back = Record::from_row(LoginFlowRow { version: 8, ..row }).unwrap();
        assert_eq!(back.view.version, 8, "the row's version is the view's");
        assert_eq!(back.view.method, record().view.method);
        assert_eq!(back.view.status, FlowStatus::SlowDown);
        assert_eq!(back.secrets.device_code.as_deref(), Some("dc-SECRET"));
        assert_eq!(back.secrets.client, record().secrets.client);
        assert_eq!(back.caller(), Caller::Admin(4));
    }

    #[test]
    fn an_unreadable_row_is_an_error_not_a_panic() {
        let mut row = record().to_row().unwrap();
        row.plan = "{not json".into();
        let error = Record::from_row(row).err().unwrap();
        assert!(error.message().contains("plan"), "{}", error.message());
    }

    #[test]
    fn admin_callers_are_read_back_from_their_actor() {
        for caller in [Caller::RootAdmin, Caller::Cli, Caller::Admin(12)] {
            assert_eq!(Caller::admin_from_actor(&caller.actor()), Some(caller));
        }
        for other in ["agent:3", "user:1", "admin:key:x", ""] {
            assert_eq!(Caller::admin_from_actor(other), None);
        }
    }
}
