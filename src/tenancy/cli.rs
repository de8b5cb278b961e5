//! Bootstrap without HTTP: `admin-key create`, `account add`, `account list`, `user create`.
//! Each opens the same database the gateway uses, does one thing, writes an audit entry and
//! prints JSON.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use kiro_layers::store::{KeyKind, NewUser};
use serde_json::json;

use super::accounts::AccountSource;
use super::api::{create_key, KeyOptions};
use super::cursor_accounts::CursorAccountSettings;
use super::keys::{Caller, KeyCache};
use super::state::Tenancy;
use super::wire::hasher;
use crate::store::crypto::Secret;

/// Where the database is (the same options as `serve`).
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// `sqlite://<file>` or `postgres://...`.
    #[arg(
        long = "database-url",
        env = "DATABASE_URL",
        default_value = crate::store::DEFAULT_DATABASE_URL,
        hide_env_values = true
    )]
    pub database_url: String,
    /// Server secret file when `KIRO_GATEWAY_SECRET` is not set.
    #[arg(
        long = "secret-key-file",
        env = "KIRO_GATEWAY_KEY_FILE",
        default_value = crate::store::DEFAULT_KEY_FILE
    )]
    pub secret_key_file: PathBuf,
}

/// `admin-key ...`
#[derive(Debug, Subcommand)]
pub enum AdminKeyCommand {
    /// Creates an admin key and prints it (once).
    Create {
        /// Database.
        #[command(flatten)]
        db: DbArgs,
        /// Label.
        #[arg(long, default_value = "bootstrap")]
        name: String,
    },
}

/// `account ...`
#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Adds a Kiro account (a refresh token, a JSON credentials file or a kiro-cli database) or
    /// a Cursor account (a session token with its refresh token, Cursor's state.vscdb, or a
    /// `<userId>::<jwt>` browser cookie).
    Add(Box<AddAccountArgs>),
    /// Signs in (Builder ID, Identity Center, Google / GitHub) and adds the account.
    Login(Box<crate::login::cli::LoginArgs>),
    /// Imports many refresh tokens or credential files at once.
    Import(Box<crate::login::cli::ImportArgs>),
    /// Lists the accounts.
    List {
        /// Database.
        #[command(flatten)]
        db: DbArgs,
    },
}

/// `account add`: a Kiro account (a refresh token, a JSON credentials file or a kiro-cli
/// database) or a Cursor account (a session token with its refresh token, Cursor's
/// state.vscdb, or a `<userId>::<jwt>` browser cookie).
#[derive(Debug, Args)]
pub struct AddAccountArgs {
    /// Database.
    #[command(flatten)]
    db: DbArgs,
    /// Label (a Cursor account read from state.vscdb defaults to its email).
    #[arg(long, default_value = "")]
    name: String,
    /// `kiro` or `cursor` (implied by --session-token and --state-vscdb).
    #[arg(long)]
    kind: Option<String>,
    /// Kiro desktop refresh token, or a Cursor account's refresh token.
    #[arg(long, hide_env_values = true)]
    refresh_token: Option<String>,
    /// Cursor: the IDE's session token (`cursorAuth/accessToken`), or a `<userId>::<jwt>`
    /// browser cookie (upgraded to a session token).
    #[arg(long)]
    session_token: Option<String>,
    /// Cursor: the IDE's state.vscdb file.
    #[arg(long)]
    state_vscdb: Option<PathBuf>,
    /// Cursor API base URL (refresh, and the cookie upgrade's poll).
    #[arg(long = "cursor-api-url", env = "CURSOR_API_URL", default_value = kiro_layers::cursor::headers::DEFAULT_API_BASE)]
    cursor_api_url: String,
    /// cursor.com (the cookie upgrade).
    #[arg(long = "cursor-website-url", env = "CURSOR_WEBSITE_URL", default_value = kiro_layers::cursor::headers::DEFAULT_WEBSITE_URL)]
    cursor_website_url: String,
    /// JSON credentials file.
    #[arg(long)]
    creds_file: Option<PathBuf>,
    /// kiro-cli SQLite database.
    #[arg(long)]
    cli_db_file: Option<PathBuf>,
    /// profileArn.
    #[arg(long)]
    profile_arn: Option<String>,
}

/// `user ...`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Creates a user and an inference key for it (printed once).
    Create {
        /// Database.
        #[command(flatten)]
        db: DbArgs,
        /// Name.
        #[arg(long)]
        name: String,
        /// Quota in micro-credits.
        #[arg(long)]
        quota: Option<i64>,
    },
}

/// Opens the database `db` names, with the key hash of its secret.
pub(crate) async fn open(db: &DbArgs) -> Result<Tenancy, String> {
    let (secret, _) = Secret::load(&db.secret_key_file)?;
    let store = crate::store::open(&db.database_url, &secret).await?;
    let keys = KeyCache::new(None, None, hasher(secret.clone()));
    Ok(Tenancy::new(store, keys, hasher(secret)))
}

const CLI: Caller = Caller::Cli;

fn print(value: serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(&value).unwrap_or_default()
    );
}

/// Runs `admin-key create`.
pub async fn admin_key(command: AdminKeyCommand) -> Result<(), String> {
    let AdminKeyCommand::Create { db, name } = command;
    let tenancy = open(&db).await?;
    let options = KeyOptions {
        name: Some(name),
        expires_at: None,
        allowed_models: Vec::new(),
        rpm_limit: None,
        max_concurrency: None,
        quota_limit: None,
    };
    let created = create_key(&tenancy, &CLI, KeyKind::Admin, None, None, options)
        .await
        .map_err(|e| e.0.message().to_owned())?;
    print(created.to_json());
    Ok(())
}

/// Runs `account add` / `account list`.
pub async fn account(command: AccountCommand) -> Result<(), String> {
    match command {
        AccountCommand::Add(add) => {
            let AddAccountArgs {
                db,
                name,
                kind,
                refresh_token,
                session_token,
                state_vscdb,
                cursor_api_url,
                cursor_website_url,
                creds_file,
                cli_db_file,
                profile_arn,
            } = *add;
            let mut tenancy = open(&db).await?;
            tenancy.cursor = CursorAccountSettings {
                api_base: cursor_api_url,
                website_url: cursor_website_url,
                ..CursorAccountSettings::default()
            };
            let creds = match creds_file {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .map_err(|e| format!("could not read {}: {e}", path.display()))?;
                    Some(serde_json::from_str(&text).map_err(|e| {
                        format!("{} is not a JSON credentials file: {e}", path.display())
                    })?)
                }
                None => None,
            };
            let source = AccountSource {
                name,
                kind,
                refresh_token,
                session_token,
                state_vscdb_path: state_vscdb,
                creds,
                cli_db_path: cli_db_file,
                profile_arn,
                ..AccountSource::default()
            };
            // The same rules as POST /admin/accounts.
            let row = super::api::admin::create_account(&tenancy, &CLI, source)
                .await
                .map_err(|e| e.0.message().to_owned())?;
            print(json!({ "account": row }));
        }
        AccountCommand::Login(args) => crate::login::cli::login(*args).await?,
        AccountCommand::Import(args) => crate::login::cli::import_command(*args).await?,
        AccountCommand::List { db } => {
            let tenancy = open(&db).await?;
            let accounts = tenancy
                .store
                .list_accounts()
                .await
                .map_err(|e| e.to_string())?;
            print(json!({ "data": accounts }));
        }
    }
    Ok(())
}

/// Runs `user create`.
pub async fn user(command: UserCommand) -> Result<(), String> {
    let UserCommand::Create { db, name, quota } = command;
    let tenancy = open(&db).await?;
    let user = tenancy
        .store
        .create_user(NewUser {
            name,
            quota_limit: quota,
            ..NewUser::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    tenancy
        .audit(
            &CLI,
            "create",
            "user",
            user.id,
            json!({ "name": user.name }),
        )
        .await;
    let options = KeyOptions {
        name: None,
        expires_at: None,
        allowed_models: Vec::new(),
        rpm_limit: None,
        max_concurrency: None,
        quota_limit: None,
    };
    let key = create_key(
        &tenancy,
        &CLI,
        KeyKind::Inference,
        Some(user.id),
        None,
        options,
    )
    .await
    .map_err(|e| e.0.message().to_owned())?;
    print(json!({ "user": user, "key": key.secret }));
    Ok(())
}
