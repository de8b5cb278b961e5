//! The closed sets of values the store keeps as text (`"active"`, `"half_open"`, ...): each
//! is an enum with `as_str`, `parse` and the same spelling in JSON.

use serde::Serialize;

use super::StoreError;

/// Declares a string-valued enum with `as_str`, `parse` and lower-case serde names.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// The stored (and JSON) spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses the stored spelling; `Invalid` names the accepted values.
            pub fn parse(text: &str) -> Result<Self, StoreError> {
                match text {
                    $($text => Ok($name::$variant),)+
                    other => Err(StoreError::Invalid(format!(
                        "`{other}` is not a valid {}; expected one of: {}",
                        stringify!($name),
                        [$($text),+].join(", ")
                    ))),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// How an account logs in to Kiro.
    AuthKind {
        /// Kiro desktop (social) refresh endpoint.
        Desktop = "desktop",
        /// AWS SSO OIDC (client id + secret).
        Oidc = "oidc",
    }
);

string_enum!(
    /// Whether an account may serve requests.
    AccountStatus {
        /// In the pool.
        Active = "active",
        /// Out of the pool (by an admin, or after `invalid_grant`).
        Disabled = "disabled",
    }
);

string_enum!(
    /// Circuit breaker position of an account.
    BreakerState {
        /// Healthy.
        Closed = "closed",
        /// Failing: not used until the probe time.
        Open = "open",
        /// One probe request allowed.
        HalfOpen = "half_open",
    }
);

string_enum!(
    /// Status of an agent or a user.
    Status {
        /// May act and be served.
        Active = "active",
        /// Refused (its keys stop working).
        Disabled = "disabled",
    }
);

string_enum!(
    /// What an API key may be used for.
    KeyKind {
        /// `/v1/*` inference.
        Inference = "inference",
        /// `/admin/*`.
        Admin = "admin",
        /// `/agent/*` for one agent.
        Agent = "agent",
    }
);

string_enum!(
    /// Whether an API key works.
    KeyStatus {
        /// Usable.
        Active = "active",
        /// Revoked for good.
        Revoked = "revoked",
    }
);

string_enum!(
    /// How usage is grouped by [`Store::query_usage`](super::Store::query_usage).
    UsageGroup {
        /// By user id.
        User = "user",
        /// By API key id.
        Key = "key",
        /// By resolved (Kiro) model.
        Model = "model",
        /// By upstream account.
        Account = "account",
        /// By UTC day (`YYYY-MM-DD`).
        Day = "day",
        /// By agent id.
        Agent = "agent",
        /// By UTC hour (`YYYY-MM-DDTHH`).
        Hour = "hour",
        /// By the kind of account that served (`kiro`, `cursor`).
        Kind = "kind",
    }
);

string_enum!(
    /// What changed, for caches (see [`Store::subscribe`](super::Store::subscribe)).
    Topic {
        /// API keys, users or agents (anything that changes who may call).
        Keys = "keys",
        /// Account rows (added, removed, enabled, disabled, token rotated).
        Accounts = "accounts",
        /// Shared runtime state of accounts (cooldowns, breaker).
        AccountState = "account_state",
        /// Aliases, combos, prices.
        Models = "models",
        /// Quota limits, usage charges, balances.
        Quota = "quota",
        /// Gateway processes on this database (one joined or left).
        Instances = "instances",
    }
);
