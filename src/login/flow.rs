//! The sign-in API ([`Logins`]): flows live in the store, so any gateway process on the
//! database answers status calls, waits, takes profile choices and pasted addresses, and
//! cancels, whichever process started the flow. Polling the sign-in service and storing the
//! account is the owner's work ([`super::owner`]).

use std::collections::HashSet;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use kiro_layers::store::Store;
use kiro_layers::GatewayError;
use tokio::sync::Notify;

use super::account::Context;
use super::oidc::{self, BUILDER_ID_START_URL};
use super::poll::DEFAULT_SLOW_DOWN_STEP;
use super::request::{FlowStatus, FlowView, LoginMethod, LoginRequest};
use super::social::{self, Pkce};
use super::stored::{Plan, Record, Secrets};
use super::LoginUrls;
use crate::tenancy::keys::Caller;
use crate::tenancy::state::Tenancy;

/// Flows not yet finished at once, across every process; more is refused (each holds a poll
/// task upstream).
pub(super) const MAX_LIVE_FLOWS: u32 = 32;
/// How long the paste fallback and a pending profile choice wait.
pub(super) const HUMAN_WAIT: Duration = Duration::from_secs(10 * 60);
/// How often a waiting caller or the owner looks at the stored flow again (a change made in
/// this process wakes them at once).
pub(super) const LOOK_AGAIN: Duration = Duration::from_millis(250);
/// The default owner lease (`LOGIN_LEASE_SECONDS`).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// The sign-in flows of the database. See the module docs.
pub struct Logins {
    pub(super) ctx: Context,
    /// This process's name as a flow owner.
    pub(super) me: String,
    /// How long an owner's claim lasts without renewal.
    pub(super) lease: Duration,
    pub(super) slow_down_step: Duration,
    /// Woken by every change this process writes.
    pub(super) changed: Notify,
    /// The flows this process drives (one task per flow).
    pub(super) driving: Mutex<HashSet<String>>,
    /// Set on shutdown: this process takes and renews no lease any more.
    pub(super) stopping: AtomicBool,
}

impl std::fmt::Debug for Logins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logins")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn not_waiting(status: FlowStatus, for_what: &str) -> GatewayError {
    GatewayError::conflict(format!(
        "This sign-in is `{}`, not waiting for {for_what}.",
        status.label()
    ))
}

impl Logins {
    /// Flows that store accounts in `tenancy`, calling the services at `urls`; this process
    /// holds the flows it drives for `lease` at a time (renewed while it runs).
    pub fn new(
        tenancy: Arc<Tenancy>,
        http: reqwest::Client,
        urls: LoginUrls,
        fingerprint: String,
        lease: Duration,
    ) -> Arc<Self> {
        Arc::new(Logins {
            ctx: Context {
                tenancy,
                http,
                urls,
                fingerprint,
            },
            me: format!(
                "pid{}-{}",
                std::process::id(),
                &uuid::Uuid::new_v4().simple().to_string()[..12]
            ),
            lease: lease.max(Duration::from_secs(1)),
            slow_down_step: DEFAULT_SLOW_DOWN_STEP,
            changed: Notify::new(),
            driving: Mutex::new(HashSet::new()),
            stopping: AtomicBool::new(false),
        })
    }

    /// The context batch import uses.
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    pub(super) fn store(&self) -> &Arc<dyn Store> {
        &self.ctx.tenancy.store
    }

    /// Starts a flow (see the module docs); this process owns it.
    pub async fn start(
        self: &Arc<Self>,
        caller: &Caller,
        request: LoginRequest,
    ) -> Result<FlowView, GatewayError> {
        let method = request.method()?;
        let name = request
            .name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty());
        if let Some(name) = name {
            crate::store::validate::name("`name`", name)?;
        }
        if let Some(arn) = &request.profile_arn {
            crate::store::validate::profile_arn(arn)?;
        }
        let http = &self.ctx.http;
        let urls = &self.ctx.urls;
        let (device, client, pkce) = match &method {
            LoginMethod::BuilderId | LoginMethod::IdentityCenter { .. } => {
                let (region, start_url) = oidc_target(&method);
                let base = urls.oidc_base(region);
                let client = oidc::register(http, &base).await?;
                let device = oidc::start_device(http, &base, &client, start_url).await?;
                (Some(device), Some(client), None)
            }
            LoginMethod::Social { provider } => {
                let device = social::start_device(http, &urls.auth_base(), *provider).await?;
                (Some(device), None, None)
            }
            LoginMethod::SocialRedirect => (None, None, Some(Pkce::new())),
        };
        let id = uuid::Uuid::new_v4().simple().to_string();
        let lifetime = device.as_ref().map_or(HUMAN_WAIT, |d| d.expires_in);
        let now = Utc::now();
        let view = FlowView {
            id: id.clone(),
            method: method.clone(),
            status: if pkce.is_some() {
                FlowStatus::WaitingForRedirect
            } else {
                FlowStatus::Pending
            },
            version: 1,
            user_code: device.as_ref().map(|d| d.user_code.clone()),
            verification_uri: device.as_ref().map(|d| d.verification_uri.clone()),
            verification_uri_complete: device.as_ref().map(|d| d.verification_uri_complete.clone()),
            sign_in_url: pkce
                .as_ref()
                .map(|p| p.sign_in_url(&urls.signin_url))
                .transpose()?,
            expires_at: now + chrono::Duration::from_std(lifetime).unwrap_or_default(),
            interval_seconds: device
                .as_ref()
                .map(|d| d.interval.max(Duration::from_secs(1)).as_secs()),
            profiles: Vec::new(),
            account: None,
            error: None,
        };
        let record = Record {
            plan: Plan {
                actor: caller.actor(),
                // The paste fallback's label (and so its default name) is known once the
                // address comes back.
                name: name
                    .map(str::to_owned)
                    .or_else(|| (pkce.is_none()).then(|| default_name(&method.label(None), &id))),
                max_concurrency: request.max_concurrency,
                preferred_profile: request.profile_arn.clone(),
                profile_arn: None,
                label: None,
                account_id: None,
                started_at: now,
            },
            secrets: Secrets {
                device_code: device.as_ref().map(|d| d.device_code.clone()),
                client,
                pkce,
                tokens: None,
            },
            view,
            finished_at: None,
        };
        let mut row = record.to_row()?;
        row.owner = Some(self.me.clone());
        self.store()
            .create_login_flow(row, self.lease, MAX_LIVE_FLOWS)
            .await?;
        tracing::info!(flow = %id, method = %method.label(None), "sign-in started");
        self.drive(id);
        Ok(record.view)
    }

    /// The stored flow.
    pub(super) async fn load(&self, id: &str) -> Result<Record, GatewayError> {
        match self.store().get_login_flow(id).await? {
            Some(row) => Record::from_row(row),
            None => Err(GatewayError::not_found(format!(
                "No sign-in `{}`.",
                super::short(id)
            ))),
        }
    }

    /// Reads the flow, lets `change` edit it, and writes it if `change` says so (`Ok(true)`),
    /// with compare-and-set on the version: a lost race reads again and asks `change` again.
    /// `change` returning an error writes nothing.
    pub(super) async fn modify(
        &self,
        id: &str,
        mut change: impl FnMut(&mut Record) -> Result<bool, GatewayError>,
    ) -> Result<Record, GatewayError> {
        for _ in 0..16 {
            let mut record = self.load(id).await?;
            let was_final = record.view.status.is_final();
            if !change(&mut record)? {
                return Ok(record);
            }
            if record.view.status.is_final() && !was_final {
                record.finished_at = Some(Utc::now());
                // An ended flow needs no secret any more.
                record.secrets = Secrets::default();
            }
            let expected = i64::try_from(record.view.version).unwrap_or(i64::MAX);
            if self
                .store()
                .update_login_flow(record.to_row()?, expected)
                .await?
            {
                record.view.version += 1;
                self.changed.notify_waiters();
                return Ok(record);
            }
        }
        Err(GatewayError::conflict(
            "This sign-in is changing too often at once: try again.",
        ))
    }

    /// Ends a flow that has not ended (`false` when it had).
    pub(super) async fn end(
        &self,
        id: &str,
        status: FlowStatus,
        error: Option<String>,
    ) -> Result<bool, GatewayError> {
        let mut ended = false;
        self.modify(id, |r| {
            ended = !r.view.status.is_final();
            if ended {
                r.view.status = status;
                r.view.error = error.clone();
                r.view.profiles.clear();
            }
            Ok(ended)
        })
        .await?;
        Ok(ended)
    }

    /// The view of a record, with the stored account read afresh.
    async fn view_of(&self, record: Record) -> FlowView {
        let mut view = record.view;
        if let Some(id) = record.plan.account_id {
            view.account = self.store().get_account(id).await.ok();
        }
        view
    }

    /// The flow as it is now.
    pub async fn status(&self, id: &str) -> Result<FlowView, GatewayError> {
        let record = self.load(id).await?;
        Ok(self.view_of(record).await)
    }

    /// Waits until the flow's version differs from `seen` (or `timeout` passes), then answers
    /// like [`Logins::status`].
    pub async fn wait(
        &self,
        id: &str,
        seen: u64,
        timeout: Duration,
    ) -> Result<FlowView, GatewayError> {
        self.wait_until(id, timeout, |v| v.version != seen).await
    }

    /// Waits until `done` holds for the flow (or `timeout` passes) and returns it.
    async fn wait_until(
        &self,
        id: &str,
        timeout: Duration,
        done: impl Fn(&FlowView) -> bool,
    ) -> Result<FlowView, GatewayError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Registered before reading, so a change written in between still wakes us.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let record = self.load(id).await?;
            let now = tokio::time::Instant::now();
            if done(&record.view) || now >= deadline {
                return Ok(self.view_of(record).await);
            }
            tokio::select! {
                () = changed => {}
                () = tokio::time::sleep(LOOK_AGAIN.min(deadline - now)) => {}
            }
        }
    }

    /// Answers `needs_profile_choice`; the owner stores the account.
    pub async fn choose_profile(&self, id: &str, arn: &str) -> Result<FlowView, GatewayError> {
        self.modify(id, |r| {
            if r.view.status != FlowStatus::NeedsProfileChoice {
                return Err(not_waiting(r.view.status, "a profile choice"));
            }
            if !r.view.profiles.iter().any(|p| p.arn == arn) {
                return Err(GatewayError::invalid_request(
                    "`profile_arn` must be one of the listed profiles.",
                ));
            }
            r.view.status = FlowStatus::Finishing;
            r.view.profiles.clear();
            r.plan.profile_arn = Some(arn.to_owned());
            r.plan.label = Some(r.view.method.label(None));
            Ok(true)
        })
        .await?;
        self.wait_until(id, Duration::from_secs(5), |v| v.status.is_final())
            .await
    }

    /// The paste fallback: exchanges the address the browser ended on; the owner stores the
    /// account, and the answer is the flow once it has (or after a minute).
    pub async fn complete_redirect(
        &self,
        id: &str,
        pasted: &str,
    ) -> Result<FlowView, GatewayError> {
        // Claim the exchange: one paste at a time, across processes.
        let claimed = self
            .modify(id, |r| {
                if r.view.method != LoginMethod::SocialRedirect {
                    return Err(GatewayError::invalid_request(
                        "This sign-in is a device flow: there is no address to paste.",
                    ));
                }
                if r.view.status != FlowStatus::WaitingForRedirect {
                    return Err(GatewayError::conflict(
                        "This sign-in is not waiting for an address.",
                    ));
                }
                r.view.status = FlowStatus::Finishing;
                Ok(true)
            })
            .await?;
        let Some(pkce) = claimed.secrets.pkce.clone() else {
            return Err(GatewayError::internal("the sign-in lost its verifier"));
        };
        let auth_base = self.ctx.urls.auth_base();
        match pkce.exchange(&self.ctx.http, &auth_base, pasted).await {
            Ok(tokens) => {
                let login_option = reqwest::Url::parse(pasted.trim()).ok().and_then(|u| {
                    u.query_pairs()
                        .find(|(k, _)| k == "login_option")
                        .map(|(_, v)| v.into_owned())
                });
                let label = LoginMethod::SocialRedirect.label(login_option.as_deref());
                self.modify(id, |r| {
                    if r.view.status != FlowStatus::Finishing || r.secrets.tokens.is_some() {
                        return Err(GatewayError::conflict(
                            "This sign-in ended while the address was exchanged.",
                        ));
                    }
                    r.plan.profile_arn = tokens.profile_arn.clone();
                    r.plan.name.get_or_insert_with(|| default_name(&label, id));
                    r.plan.label = Some(label.clone());
                    r.secrets.tokens = Some(tokens.clone());
                    Ok(true)
                })
                .await?;
                self.wait_until(id, Duration::from_secs(60), |v| v.status.is_final())
                    .await
            }
            Err(error) => {
                // Give the flow back, so a correct address can still be pasted.
                self.modify(id, |r| {
                    let ours = r.view.status == FlowStatus::Finishing && r.secrets.tokens.is_none();
                    if ours {
                        r.view.status = FlowStatus::WaitingForRedirect;
                    }
                    Ok(ours)
                })
                .await?;
                Err(error)
            }
        }
    }

    /// Stops a flow that has not ended.
    pub async fn cancel(&self, id: &str) -> Result<FlowView, GatewayError> {
        let record = self
            .modify(id, |r| match r.view.status {
                // The user has signed in and the account is being stored: let it finish
                // rather than report "cancelled" for an account that then exists.
                FlowStatus::Finishing => Err(GatewayError::conflict(
                    "This sign-in has succeeded and is being stored; it can no longer be cancelled.",
                )),
                status if status.is_final() => Ok(false),
                _ => {
                    r.view.status = FlowStatus::Cancelled;
                    r.view.error = None;
                    r.view.profiles.clear();
                    Ok(true)
                }
            })
            .await?;
        Ok(self.view_of(record).await)
    }
}

/// The account name when the operator gave none: the method and the flow id's start, so a
/// second attempt to store the same sign-in finds the first one's account by name.
fn default_name(label: &str, id: &str) -> String {
    format!("{label} {}", &id[..id.len().min(8)])
}

pub(super) fn oidc_target(method: &LoginMethod) -> (&str, &str) {
    match method {
        LoginMethod::IdentityCenter { start_url, region } => (region, start_url),
        _ => ("us-east-1", BUILDER_ID_START_URL),
    }
}
