//! The end of every sign-in and import: one refresh to prove the login works (its rotated
//! refresh token is the one kept), the account row with everything later refreshes need, the
//! sign-in details, a pool reload and an audit entry.

use std::sync::Arc;

use kiro_layers::kiro::auth::{
    region_from_profile_arn, CredentialStore, MemoryStore, RefreshingCredential, TokenSet,
};
use kiro_layers::store::{AccountLogin, AccountRow, AuthKind, NewAccount};
use kiro_layers::GatewayError;
use serde_json::json;

use super::oidc::Registration;
use super::LoginUrls;
use crate::tenancy::keys::Caller;
use crate::tenancy::state::Tenancy;

/// What a sign-in flow or import needs to store an account.
pub struct Context {
    /// Store, pool control and audit log.
    pub tenancy: Arc<Tenancy>,
    /// The upstream HTTP client.
    pub http: reqwest::Client,
    /// Where the calls go.
    pub urls: LoginUrls,
    /// Goes into the user agent of the verifying refresh.
    pub fingerprint: String,
}

/// A finished sign-in, before it is verified and stored.
pub struct SignedIn {
    /// `builder-id`, `identity-center`, `social-google`, `social-github` or `import`.
    pub method: String,
    /// The refresh token (and the access token the flow got).
    pub refresh_token: String,
    /// The OIDC client (Builder ID and Identity Center).
    pub client: Option<Registration>,
    /// Region of the refresh endpoint.
    pub sso_region: String,
    /// Identity Center start URL.
    pub start_url: Option<String>,
    /// The profile the account sends.
    pub profile_arn: Option<String>,
    /// API region when known (else the profile's region, else us-east-1).
    pub api_region: Option<String>,
}

/// Names and limits the operator chose.
#[derive(Debug, Clone, Default)]
pub struct AccountOptions {
    /// Label (a default is made from the method when absent).
    pub name: Option<String>,
    /// Leases at once.
    pub max_concurrency: Option<u32>,
}

/// The regions the Kiro API runs in; a profile elsewhere is served from us-east-1.
const API_REGIONS: [&str; 2] = ["us-east-1", "eu-central-1"];

fn api_region_for(signed: &SignedIn) -> String {
    if let Some(region) = &signed.api_region {
        return region.clone();
    }
    signed
        .profile_arn
        .as_deref()
        .and_then(region_from_profile_arn)
        .filter(|r| API_REGIONS.contains(r))
        .unwrap_or("us-east-1")
        .to_owned()
}

/// The new login while it is verified: in memory, named for what it is in messages.
struct NewLogin(MemoryStore);

impl CredentialStore for NewLogin {
    fn describe(&self) -> String {
        "the new login".to_owned()
    }
    fn load(&self) -> futures_util::future::BoxFuture<'_, Result<TokenSet, GatewayError>> {
        self.0.load()
    }
    fn save(
        &self,
        tokens: &TokenSet,
    ) -> futures_util::future::BoxFuture<'_, Result<(), GatewayError>> {
        self.0.save(tokens)
    }
}

/// Refreshes once with `tokens`; returns the tokens after the refresh (rotated refresh token,
/// the profile the refresh named).
pub async fn verify(ctx: &Context, tokens: TokenSet) -> Result<TokenSet, GatewayError> {
    let region = tokens
        .sso_region
        .clone()
        .unwrap_or_else(|| "us-east-1".to_owned());
    let memory = Arc::new(NewLogin(MemoryStore::new(tokens)));
    let credential = RefreshingCredential::new(
        "new-account".to_owned(),
        Arc::clone(&memory) as Arc<dyn CredentialStore>,
        ctx.urls.endpoints.clone(),
        region,
        None,
        None,
        ctx.http.clone(),
        ctx.fingerprint.clone(),
    );
    credential.force_refresh().await.map_err(|e| {
        GatewayError::invalid_request(format!(
            "The login did not pass its first refresh: {}",
            super::short(e.message())
        ))
    })?;
    memory.load().await
}

/// Verifies `signed` with one refresh and stores it as a new account.
pub async fn store(
    ctx: &Context,
    caller: &Caller,
    signed: SignedIn,
    options: AccountOptions,
) -> Result<AccountRow, GatewayError> {
    let name = match options.name.map(|n| n.trim().to_owned()) {
        Some(name) if !name.is_empty() => name,
        _ => format!(
            "{} {}",
            signed.method,
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ),
    };
    crate::store::validate::name("`name`", &name)?;
    let tokens = TokenSet {
        refresh_token: signed.refresh_token.clone(),
        client_id: signed.client.as_ref().map(|c| c.client_id.clone()),
        client_secret: signed.client.as_ref().map(|c| c.client_secret.clone()),
        sso_region: Some(signed.sso_region.clone()),
        profile_arn: signed.profile_arn.clone(),
        ..TokenSet::default()
    };
    let verified = verify(ctx, tokens).await?;
    let profile_arn = signed.profile_arn.clone().or(verified.profile_arn.clone());
    let signed = SignedIn {
        profile_arn,
        ..signed
    };
    let api_region = api_region_for(&signed);
    let account = NewAccount {
        name,
        kind: kiro_layers::traits::AccountKind::KIRO,
        access_token: None,
        machine_id: None,
        client_key: None,
        auth_kind: if signed.client.is_some() {
            AuthKind::Oidc
        } else {
            AuthKind::Desktop
        },
        refresh_token: verified.refresh_token,
        client_id: signed.client.as_ref().map(|c| c.client_id.clone()),
        client_secret: signed.client.as_ref().map(|c| c.client_secret.clone()),
        profile_arn: signed.profile_arn.clone(),
        sso_region: signed.sso_region.clone(),
        api_region,
        max_concurrency: options.max_concurrency,
    };
    let tenancy = &ctx.tenancy;
    let row = tenancy.store.create_account(account).await?;
    let expires_at = signed
        .client
        .as_ref()
        .and_then(|c| c.client_secret_expires_at)
        .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0));
    let login = AccountLogin {
        account_id: row.id,
        method: signed.method.clone(),
        start_url: signed.start_url.clone(),
        client_secret_expires_at: expires_at,
    };
    if let Err(error) = tenancy.store.put_account_login(login).await {
        // The account itself works; only the re-login hints are missing.
        tracing::warn!(
            account = row.id,
            "could not record how the account signed in: {error}"
        );
    }
    tenancy.pool_changed().await;
    tenancy
        .audit(
            caller,
            "login",
            "account",
            row.id,
            json!({
                "name": row.name,
                "method": signed.method,
                "sso_region": row.sso_region,
                "start_url": signed.start_url,
                "profile_arn": row.profile_arn,
                "client_secret_expires_at": expires_at,
            }),
        )
        .await;
    Ok(row)
}
