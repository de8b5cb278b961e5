//! `kiro-gateway account login` and `account import`: the same flows as the admin endpoints,
//! run in this process against the gateway's database (a running gateway picks the new account
//! up from the store's change notification).

use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use kiro_layers::kiro::auth::Endpoints;
use serde_json::json;

use super::batch::{import, ImportRequest};
use super::{FlowStatus, LoginRequest, LoginUrlArgs, LoginUrls, Logins};
use crate::tenancy::cli::DbArgs;
use crate::tenancy::keys::Caller;

/// The refresh endpoints, as `serve` names them.
#[derive(Debug, Clone, Args)]
pub struct UpstreamArgs {
    /// Kiro API base URL; `{region}` is replaced by the API region.
    #[arg(
        long = "kiro-api-url",
        env = "KIRO_API_URL",
        default_value = "https://runtime.{region}.kiro.dev"
    )]
    pub kiro_api_url: String,
    /// Kiro desktop auth base URL (social sign-in and refresh).
    #[arg(
        long = "kiro-desktop-auth-url",
        env = "KIRO_DESKTOP_AUTH_URL",
        default_value = "https://prod.{region}.auth.desktop.kiro.dev"
    )]
    pub kiro_desktop_auth_url: String,
    /// AWS SSO OIDC base URL (Builder ID and Identity Center).
    #[arg(
        long = "kiro-oidc-url",
        env = "KIRO_OIDC_URL",
        default_value = "https://oidc.{region}.amazonaws.com"
    )]
    pub kiro_oidc_url: String,
    /// Sign-in URLs.
    #[command(flatten)]
    pub login: LoginUrlArgs,
}

impl UpstreamArgs {
    fn urls(&self) -> LoginUrls {
        LoginUrls::new(
            Endpoints {
                desktop_auth_url: self.kiro_desktop_auth_url.clone(),
                oidc_url: self.kiro_oidc_url.clone(),
                api_url: self.kiro_api_url.clone(),
            },
            &self.login,
        )
    }
}

/// `account login`: sign in and store the account.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Database.
    #[command(flatten)]
    pub db: DbArgs,
    /// Upstream URLs.
    #[command(flatten)]
    pub upstream: UpstreamArgs,
    /// Sign in with AWS Builder ID.
    #[arg(long)]
    pub builder_id: bool,
    /// Sign in with IAM Identity Center at this start URL (needs --region).
    #[arg(long, value_name = "START_URL")]
    pub identity_center: Option<String>,
    /// The IAM Identity Center region.
    #[arg(long)]
    pub region: Option<String>,
    /// Sign in with Google or GitHub through Kiro (default google).
    #[arg(long, value_name = "google|github", num_args = 0..=1, default_missing_value = "google")]
    pub social: Option<String>,
    /// With --social: sign in in a browser and paste the address it ends on, instead of the
    /// device code.
    #[arg(long)]
    pub paste: bool,
    /// Account label.
    #[arg(long)]
    pub name: Option<String>,
    /// Identity Center: the profile to use when there are several.
    #[arg(long)]
    pub profile_arn: Option<String>,
    /// Leases this account may have out at once.
    #[arg(long)]
    pub max_concurrency: Option<u32>,
}

/// `account import`: many refresh tokens or credential files at once.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Database.
    #[command(flatten)]
    pub db: DbArgs,
    /// Upstream URLs.
    #[command(flatten)]
    pub upstream: UpstreamArgs,
    /// A text file with one refresh token (or one-line credentials JSON) per line; `-` reads
    /// standard input.
    #[arg(long)]
    pub tokens_file: Option<PathBuf>,
    /// A JSON credentials file, or an array of them (repeatable).
    #[arg(long = "file")]
    pub files: Vec<PathBuf>,
    /// Names are `<prefix> <batch>-<n>`.
    #[arg(long, default_value = "import")]
    pub name_prefix: String,
}

async fn logins(db: &DbArgs, upstream: &UpstreamArgs) -> Result<Arc<Logins>, String> {
    let tenancy = Arc::new(crate::tenancy::cli::open(db).await?);
    let http = crate::app::upstream_http_client()?;
    let fingerprint = kiro_layers::kiro::headers::fingerprint("kiro-gateway-cli");
    Ok(Logins::new(
        tenancy,
        http,
        upstream.urls(),
        fingerprint,
        upstream.login.lease(),
    ))
}

fn request(args: &LoginArgs) -> Result<LoginRequest, String> {
    let chosen = [
        args.builder_id,
        args.identity_center.is_some(),
        args.social.is_some(),
    ];
    if chosen.iter().filter(|c| **c).count() != 1 {
        return Err("give exactly one of --builder-id, --identity-center URL --region R, --social [google|github]".into());
    }
    let method = if args.builder_id {
        "builder-id"
    } else if args.identity_center.is_some() {
        "identity-center"
    } else if args.paste {
        "social-redirect"
    } else {
        "social"
    };
    Ok(LoginRequest {
        method: method.to_owned(),
        start_url: args.identity_center.clone(),
        region: args.region.clone(),
        provider: args.social.clone().filter(|_| !args.paste),
        name: args.name.clone(),
        max_concurrency: args.max_concurrency,
        profile_arn: args.profile_arn.clone(),
    })
}

fn read_line(prompt: &str) -> Result<String, String> {
    println!("{prompt}");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("could not read standard input: {e}"))?;
    Ok(line.trim().to_owned())
}

/// Runs `account login`.
pub async fn login(args: LoginArgs) -> Result<(), String> {
    let request = request(&args)?;
    let logins = logins(&args.db, &args.upstream).await?;
    let caller = Caller::Cli;
    let started = logins
        .start(&caller, request)
        .await
        .map_err(|e| e.message().to_owned())?;
    if let Some(url) = &started.sign_in_url {
        println!("Open this address in a private browser window and sign in with Google or GitHub:\n\n  {url}\n");
        println!("The browser then ends on a page that does not load (http://localhost:3128/oauth/callback?...).");
        let pasted = tokio::task::spawn_blocking(|| read_line("Paste that whole address here:"))
            .await
            .map_err(|e| e.to_string())??;
        let done = logins
            .complete_redirect(&started.id, &pasted)
            .await
            .map_err(|e| e.message().to_owned())?;
        return report(done);
    }
    println!(
        "Open {}\nand enter the code {} (a private window avoids signing in with the wrong account).",
        started.verification_uri_complete.as_deref().unwrap_or_default(),
        started.user_code.as_deref().unwrap_or_default()
    );
    println!(
        "Waiting for the sign-in (the code expires at {}).",
        started.expires_at.format("%H:%M:%S UTC")
    );
    let mut seen = started.version;
    loop {
        let now = logins
            .wait(&started.id, seen, Duration::from_secs(15))
            .await
            .map_err(|e| e.message().to_owned())?;
        if now.version == seen {
            println!("  still waiting...");
            continue;
        }
        seen = now.version;
        match now.status {
            FlowStatus::Pending => {}
            FlowStatus::SlowDown => println!(
                "  the service asked to slow down: polling every {} s",
                now.interval_seconds.unwrap_or_default()
            ),
            FlowStatus::Finishing => {
                println!("  signed in; checking the account with one refresh...")
            }
            FlowStatus::NeedsProfileChoice => {
                println!("This user has several Kiro profiles:");
                for (n, profile) in now.profiles.iter().enumerate() {
                    println!("  {}. {} ({})", n + 1, profile.name, profile.arn);
                }
                let count = now.profiles.len();
                let answer = tokio::task::spawn_blocking(move || {
                    read_line(&format!("Which one (1-{count})?"))
                })
                .await
                .map_err(|e| e.to_string())??;
                let chosen = answer
                    .parse::<usize>()
                    .ok()
                    .and_then(|n| n.checked_sub(1))
                    .and_then(|n| now.profiles.get(n))
                    .ok_or_else(|| format!("`{answer}` is not a number from 1 to {count}"))?;
                logins
                    .choose_profile(&started.id, &chosen.arn)
                    .await
                    .map_err(|e| e.message().to_owned())?;
            }
            _ if now.status.is_final() => return report(now),
            _ => {}
        }
    }
}

fn report(view: super::FlowView) -> Result<(), String> {
    match (&view.status, &view.account) {
        (FlowStatus::Succeeded, Some(account)) => {
            println!(
                "Signed in: account {} `{}` added.",
                account.id, account.name
            );
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({ "account": account })).unwrap_or_default()
            );
            Ok(())
        }
        _ => Err(format!(
            "sign-in {}: {}",
            serde_json::to_value(view.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            view.error.unwrap_or_else(|| "no account was added".into())
        )),
    }
}

/// Runs `account import`.
pub async fn import_command(args: ImportArgs) -> Result<(), String> {
    let text = match &args.tokens_file {
        Some(path) if path.as_os_str() == "-" => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(|e| format!("could not read standard input: {e}"))?;
            Some(text)
        }
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| format!("could not read {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let mut files = Vec::new();
    for path in &args.files {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("could not read {}: {e}", path.display()))?;
        files.push(
            serde_json::from_str(&text)
                .map_err(|e| format!("{} is not JSON: {e}", path.display()))?,
        );
    }
    let logins = logins(&args.db, &args.upstream).await?;
    let request = ImportRequest {
        text,
        files,
        name_prefix: Some(args.name_prefix.clone()),
        max_concurrency: None,
    };
    let results = import(logins.context(), &Caller::Cli, request)
        .await
        .map_err(|e| e.message().to_owned())?;
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({ "results": results })).unwrap_or_default()
    );
    Ok(())
}
