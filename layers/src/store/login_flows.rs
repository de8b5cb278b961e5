//! Sign-in flows kept in the database (src/login/), so that every gateway process on it can
//! show, continue and finish a flow another process started.
//!
//! The store knows little of a flow: its id, a version for compare-and-set writes, whether it
//! has finished, and an owner lease that says which process polls the sign-in service. What a
//! status call shows (`view`) and what continuing needs (`plan`) are JSON the login module
//! writes; `secrets` (device code, client secret, PKCE verifier, tokens) is plaintext here
//! and encrypted at rest by the backend, like account refresh tokens.

use super::Timestamp;

/// One stored sign-in flow. `Debug` leaves the secrets out.
#[derive(Clone, PartialEq, Eq)]
pub struct LoginFlowRow {
    /// Random flow id.
    pub id: String,
    /// The flow's status, as text (for people reading the table; the JSON has it too).
    pub status: String,
    /// Bumped by every [`update_login_flow`](super::Store::update_login_flow).
    pub version: i64,
    /// What a status call shows, JSON, no secret.
    pub view: String,
    /// What continuing needs that is not secret, JSON.
    pub plan: String,
    /// Secrets, JSON; encrypted at rest.
    pub secrets: String,
    /// When the code (or the wait for a person) runs out.
    pub expires_at: Timestamp,
    /// When the flow ended; `None` while it runs.
    pub finished_at: Option<Timestamp>,
    /// The process polling for it (read only: set by create and lease calls).
    pub owner: Option<String>,
    /// Until when `owner` holds it (read only).
    pub lease_until: Option<Timestamp>,
}

impl std::fmt::Debug for LoginFlowRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginFlowRow")
            .field("id", &self.id)
            .field("status", &self.status)
            .field("version", &self.version)
            .field("view", &self.view)
            .field("expires_at", &self.expires_at)
            .field("finished_at", &self.finished_at)
            .field("owner", &self.owner)
            .field("lease_until", &self.lease_until)
            .finish_non_exhaustive()
    }
}
