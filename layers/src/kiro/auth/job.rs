//! One refresh attempt with its write-back, run on its own task: if the caller that started it
//! goes away (client disconnect), the rotated refresh token still reaches the store instead of
//! being lost with the dropped future.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::OwnedMutexGuard;

use super::exchange::{Context, RefreshFailure, Refreshed};
use super::{desktop, is_region_name, oidc, AuthKind, CredentialStore, Endpoints, TokenSet};
use crate::error::GatewayError;

/// Everything a refresh needs, cheap to clone into a task.
#[derive(Clone)]
pub(crate) struct RefreshJob {
    pub account_id: String,
    pub store: Arc<dyn CredentialStore>,
    pub endpoints: Endpoints,
    pub default_region: String,
    pub http: reqwest::Client,
    pub fingerprint: String,
    pub refreshes: Arc<AtomicU64>,
}

/// A failed attempt, with the tokens it was made with (possibly reloaded from the store).
pub(crate) struct Failed {
    pub tokens: TokenSet,
    pub error: GatewayError,
}

impl RefreshJob {
    /// Refreshes `tokens` and writes the result back, on a task of its own. The task holds the
    /// refresh gate until it is done, so a second refresh cannot race one whose caller left.
    pub async fn run_detached(
        &self,
        tokens: TokenSet,
        gate: OwnedMutexGuard<()>,
    ) -> (Result<TokenSet, Failed>, Option<OwnedMutexGuard<()>>) {
        let job = self.clone();
        let fallback = tokens.clone();
        // The refresh logs inside the span of the request that started it (its request id).
        let task = tokio::spawn(tracing::Instrument::in_current_span(async move {
            let outcome = job.run(tokens).await;
            (outcome, gate)
        }));
        match task.await {
            Ok((outcome, gate)) => (outcome, Some(gate)),
            Err(err) => (
                Err(Failed {
                    tokens: fallback,
                    error: GatewayError::internal(format!("token refresh task failed: {err}")),
                }),
                None,
            ),
        }
    }

    async fn run(&self, mut tokens: TokenSet) -> Result<TokenSet, Failed> {
        let mut outcome = self.call(&tokens).await;
        if let Err(failure) = &outcome {
            if failure.invalid_grant {
                // Another program (kiro-cli, the IDE) may have rotated the token since our reload.
                if let Ok(reloaded) = self.store.load().await {
                    if reloaded.refresh_token != tokens.refresh_token {
                        tokens = reloaded;
                        outcome = self.call(&tokens).await;
                    }
                }
            }
        }
        match outcome {
            Ok(refreshed) => Ok(self.apply(tokens, refreshed).await),
            Err(failure) => Err(Failed {
                tokens,
                error: failure.error,
            }),
        }
    }

    async fn call(&self, tokens: &TokenSet) -> Result<Refreshed, RefreshFailure> {
        // The SSO region picks the refresh host; the API region is decided elsewhere.
        let sso_region = tokens
            .sso_region
            .as_deref()
            .filter(|r| is_region_name(r))
            .unwrap_or(&self.default_region);
        let mut secrets: Vec<&str> = vec![tokens.refresh_token.as_str()];
        secrets.extend(tokens.client_secret.as_deref());
        secrets.extend(tokens.access_token.as_deref());
        let ctx = Context {
            account_id: &self.account_id,
            store: self.store.describe(),
            secrets: &secrets,
        };
        match (tokens.auth_kind(), &tokens.client_id, &tokens.client_secret) {
            (AuthKind::AwsSsoOidc, Some(client_id), Some(client_secret)) => {
                let url = self.endpoints.oidc_token_url(sso_region);
                oidc::refresh(
                    &self.http,
                    &url,
                    &tokens.refresh_token,
                    client_id,
                    client_secret,
                    &ctx,
                )
                .await
            }
            _ => {
                let url = self.endpoints.desktop_refresh_url(sso_region);
                desktop::refresh(
                    &self.http,
                    &url,
                    &tokens.refresh_token,
                    &self.fingerprint,
                    &ctx,
                )
                .await
            }
        }
    }

    async fn apply(&self, mut tokens: TokenSet, refreshed: Refreshed) -> TokenSet {
        let rotated = refreshed.refresh_token.is_some();
        tokens.access_token = Some(refreshed.access_token);
        if let Some(next) = refreshed.refresh_token {
            tokens.refresh_token = next;
        }
        tokens.expires_at = Some(refreshed.expires_at);
        if refreshed.profile_arn.is_some() {
            tokens.profile_arn = refreshed.profile_arn;
        }
        self.refreshes.fetch_add(1, Ordering::AcqRel);
        tracing::info!(
            account = %self.account_id,
            kind = ?tokens.auth_kind(),
            expires_at = %refreshed.expires_at,
            rotated,
            "Kiro access token refreshed"
        );
        if let Err(err) = self.store.save(&tokens).await {
            tracing::warn!(
                account = %self.account_id,
                store = %self.store.describe(),
                error = %err.message(),
                "refreshed tokens could not be written back; they live in memory until restart"
            );
        }
        tokens
    }
}
