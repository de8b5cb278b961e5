//! A Cursor Pro account from the configuration (`CURSOR_SESSION_TOKEN`, `CURSOR_REFRESH_TOKEN`):
//! its credential for the pool, the Cursor upstream, and its catalog loaded into the model
//! registry in the background. In `--demo` the built-in fake Cursor serves it.

use std::sync::Arc;

use kiro_layers::cursor::auth::{
    session_token_from_input, CursorCredential, CursorSecrets, NoWriteBack,
};
use kiro_layers::cursor::headers::CursorConfig;
use kiro_layers::cursor::service::CursorService;

use crate::config::ServeArgs;

/// The configured Cursor account and its upstream.
pub struct CursorAccount {
    /// The credential the pool leases.
    pub credential: Arc<CursorCredential>,
    /// The upstream serving it.
    pub service: CursorService,
    /// The fake Cursor, in demo mode.
    pub demo: Option<crate::fake_cursor::FakeCursorHandle>,
}

/// The account `args` configure, if any (in demo mode, one on the built-in fake Cursor).
pub async fn configure(
    args: &ServeArgs,
    http: reqwest::Client,
) -> Result<Option<CursorAccount>, String> {
    let mut config = cursor_config(args);
    let (session, refresh, demo) = if args.demo {
        // The demo's Kiro answers scripted scenarios (`[fake:...]`) the fake Cursor does not
        // know, so the demo Cursor lists only models Kiro does not serve: a name both served
        // would send every other demo request to an upstream that merely echoes.
        let models = ["claude-4.5-sonnet-thinking", "gpt-5.4-medium", "default"];
        let fake = crate::fake_cursor::start(crate::fake_cursor::FakeCursorConfig {
            models: models.iter().map(|m| (*m).to_owned()).collect(),
            ..crate::fake_cursor::FakeCursorConfig::default()
        })
        .await
        .map_err(|e| format!("could not start the demo Cursor upstream: {e}"))?;
        config.api_base = fake.base_url();
        tracing::info!(
            "demo mode: a Cursor account on the built-in fake Cursor at {}",
            fake.base_url()
        );
        (
            Some(fake.issue_session_token(24 * 3600)),
            Some(fake.issue_refresh_token()),
            Some(fake),
        )
    } else {
        (
            args.cursor_session_token.clone().filter(|t| !t.is_empty()),
            args.cursor_refresh_token.clone().filter(|t| !t.is_empty()),
            None,
        )
    };
    let Some(session) = session else {
        return Ok(None);
    };
    let session =
        session_token_from_input(&session).map_err(|why| format!("CURSOR_SESSION_TOKEN: {why}"))?;
    let config = Arc::new(config);
    let credential = Arc::new(CursorCredential::new(
        "cursor".to_owned(),
        CursorSecrets {
            access_token: session,
            refresh_token: refresh,
            machine_id: None,
            client_key: None,
        },
        Arc::clone(&config),
        http,
        Arc::new(NoWriteBack),
    ));
    tracing::warn!(
        "a Cursor account is configured: using a Cursor subscription through a gateway goes \
         against Cursor's terms and can get the account banned"
    );
    Ok(Some(CursorAccount {
        credential,
        service: CursorService::new((*config).clone()),
        demo,
    }))
}

/// The Cursor settings `args` give (URL, client version; the rest at their defaults).
pub fn cursor_config(args: &ServeArgs) -> CursorConfig {
    CursorConfig {
        api_base: args.cursor_api_url.clone(),
        client_version: args.cursor_client_version.clone(),
        ..CursorConfig::default()
    }
}
