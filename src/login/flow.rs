//! The flows in progress and the background task that polls, resolves the profile and stores
//! the account.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use kiro_layers::GatewayError;
use tokio::sync::{oneshot, watch};

use super::account::{self, AccountOptions, Context, SignedIn};
use super::oidc::{self, Registration, BUILDER_ID_START_URL};
use super::poll::{poll_until_done, PollClock, PollEnd, PollProgress, DEFAULT_SLOW_DOWN_STEP};
use super::profiles::{self, BUILDER_ID_PROFILE_ARN, DEFAULT_SOCIAL_PROFILE_ARN};
use super::request::{FlowStatus, FlowView, LoginMethod, LoginRequest};
use super::social::{self, Pkce};
use super::{DeviceStart, LoginTokens, LoginUrls};
use crate::tenancy::keys::Caller;
use crate::tenancy::state::Tenancy;

/// Flows not yet finished at once; more is refused (each holds a poll task upstream).
const MAX_LIVE_FLOWS: usize = 32;
/// Finished flows stay visible this long.
const KEEP_FINISHED: Duration = Duration::from_secs(15 * 60);
/// How long the paste fallback and a pending profile choice wait.
const HUMAN_WAIT: Duration = Duration::from_secs(10 * 60);

struct Flow {
    view: Mutex<FlowView>,
    changed: watch::Sender<u64>,
    cancel: watch::Sender<bool>,
    /// The choice channel while `needs_profile_choice`.
    choice: Mutex<Option<oneshot::Sender<String>>>,
    /// The paste fallback's secret half.
    pkce: Option<Pkce>,
    /// Paste fallback: one exchange at a time.
    exchanging: tokio::sync::Mutex<()>,
    caller: Caller,
    options: AccountOptions,
    preferred_profile: Option<String>,
    finished_at: Mutex<Option<std::time::Instant>>,
}

impl Flow {
    fn snapshot(&self) -> FlowView {
        lock(&self.view).clone()
    }

    fn update(&self, change: impl FnOnce(&mut FlowView)) {
        let version = {
            let mut view = lock(&self.view);
            if view.status.is_final() {
                return;
            }
            change(&mut view);
            view.version += 1;
            if view.status.is_final() {
                *lock(&self.finished_at) = Some(std::time::Instant::now());
            }
            view.version
        };
        self.changed.send_replace(version);
    }

    fn end(&self, status: FlowStatus, error: Option<String>) {
        self.update(|v| {
            v.status = status;
            v.error = error;
        });
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The sign-in flows of this process. See the module docs.
pub struct Logins {
    ctx: Context,
    flows: Mutex<HashMap<String, Arc<Flow>>>,
    slow_down_step: Duration,
}

impl std::fmt::Debug for Logins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logins").finish_non_exhaustive()
    }
}

impl Logins {
    /// Flows that store accounts in `tenancy`, calling the services at `urls`.
    pub fn new(
        tenancy: Arc<Tenancy>,
        http: reqwest::Client,
        urls: LoginUrls,
        fingerprint: String,
    ) -> Arc<Self> {
        Arc::new(Logins {
            ctx: Context {
                tenancy,
                http,
                urls,
                fingerprint,
            },
            flows: Mutex::new(HashMap::new()),
            slow_down_step: DEFAULT_SLOW_DOWN_STEP,
        })
    }

    /// The context batch import uses.
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// Starts a flow (see the module docs).
    pub async fn start(
        self: &Arc<Self>,
        caller: &Caller,
        request: LoginRequest,
    ) -> Result<FlowView, GatewayError> {
        let method = request.method()?;
        if let Some(name) = request.name.as_deref().filter(|n| !n.trim().is_empty()) {
            crate::store::validate::name("`name`", name.trim())?;
        }
        if let Some(arn) = &request.profile_arn {
            crate::store::validate::profile_arn(arn)?;
        }
        self.prune();
        let live = lock(&self.flows)
            .values()
            .filter(|f| !f.snapshot().status.is_final())
            .count();
        if live >= MAX_LIVE_FLOWS {
            return Err(GatewayError::conflict(format!(
                "{live} sign-ins are already in progress: finish or cancel one first."
            )));
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
            expires_at: Utc::now()
                + chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::zero()),
            interval_seconds: device
                .as_ref()
                .map(|d| d.interval.max(Duration::from_secs(1)).as_secs()),
            profiles: Vec::new(),
            account: None,
            error: None,
        };
        let flow = Arc::new(Flow {
            view: Mutex::new(view.clone()),
            changed: watch::channel(1).0,
            cancel: watch::channel(false).0,
            choice: Mutex::new(None),
            pkce,
            exchanging: tokio::sync::Mutex::new(()),
            caller: caller.clone(),
            options: AccountOptions {
                name: request.name.clone(),
                max_concurrency: request.max_concurrency,
            },
            preferred_profile: request.profile_arn.clone(),
            finished_at: Mutex::new(None),
        });
        lock(&self.flows).insert(id.clone(), Arc::clone(&flow));
        tracing::info!(flow = %id, method = %method.label(None), "sign-in started");
        match device {
            Some(device) => {
                let logins = Arc::clone(self);
                tokio::spawn(async move { logins.drive(flow, method, device, client).await });
            }
            None => {
                // The paste fallback has no poller; this ends it when nobody pastes in time.
                let flow = Arc::clone(&flow);
                tokio::spawn(async move {
                    let mut cancel = flow.cancel.subscribe();
                    tokio::select! {
                        () = tokio::time::sleep(HUMAN_WAIT) => flow.end(FlowStatus::Expired, Some("Nobody pasted the address in time.".into())),
                        _ = cancel.wait_for(|c| *c) => {}
                    }
                });
            }
        }
        Ok(view)
    }

    fn flow(&self, id: &str) -> Result<Arc<Flow>, GatewayError> {
        lock(&self.flows)
            .get(id)
            .cloned()
            .ok_or_else(|| GatewayError::not_found(format!("No sign-in `{}`.", super::short(id))))
    }

    /// Forgets flows that finished long ago.
    fn prune(&self) {
        lock(&self.flows).retain(|_, flow| {
            lock(&flow.finished_at).is_none_or(|at| at.elapsed() < KEEP_FINISHED)
        });
    }

    /// The flow as it is now.
    pub fn status(&self, id: &str) -> Result<FlowView, GatewayError> {
        Ok(self.flow(id)?.snapshot())
    }

    /// Waits until the flow's version differs from `seen` (or `timeout` passes), then answers
    /// like [`Logins::status`].
    pub async fn wait(
        &self,
        id: &str,
        seen: u64,
        timeout: Duration,
    ) -> Result<FlowView, GatewayError> {
        let flow = self.flow(id)?;
        let mut changed = flow.changed.subscribe();
        let _ = tokio::time::timeout(timeout, changed.wait_for(|v| *v != seen)).await;
        Ok(flow.snapshot())
    }

    /// Answers `needs_profile_choice`.
    pub async fn choose_profile(&self, id: &str, arn: &str) -> Result<FlowView, GatewayError> {
        let flow = self.flow(id)?;
        let view = flow.snapshot();
        if view.status != FlowStatus::NeedsProfileChoice {
            return Err(GatewayError::conflict(format!(
                "This sign-in is `{}`, not waiting for a profile choice.",
                serde_json::to_value(view.status)
                    .unwrap_or_default()
                    .as_str()
                    .unwrap_or("")
            )));
        }
        if !view.profiles.iter().any(|p| p.arn == arn) {
            return Err(GatewayError::invalid_request(
                "`profile_arn` must be one of the listed profiles.",
            ));
        }
        let sender = lock(&flow.choice).take();
        let sent = sender.is_some_and(|sender| sender.send(arn.to_owned()).is_ok());
        if !sent {
            return Err(GatewayError::conflict("The profile was already chosen."));
        }
        let mut changed = flow.changed.subscribe();
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            changed.wait_for(|v| *v != view.version),
        )
        .await;
        Ok(flow.snapshot())
    }

    /// The paste fallback: exchanges the address the browser ended on and stores the account.
    pub async fn complete_redirect(
        &self,
        id: &str,
        pasted: &str,
    ) -> Result<FlowView, GatewayError> {
        let flow = self.flow(id)?;
        let Some(pkce) = &flow.pkce else {
            return Err(GatewayError::invalid_request(
                "This sign-in is a device flow: there is no address to paste.",
            ));
        };
        let _one_at_a_time = flow.exchanging.lock().await;
        if flow.snapshot().status != FlowStatus::WaitingForRedirect {
            return Err(GatewayError::conflict(
                "This sign-in is not waiting for an address.",
            ));
        }
        let auth_base = self.ctx.urls.auth_base();
        let tokens = pkce.exchange(&self.ctx.http, &auth_base, pasted).await?;
        let login_option = reqwest::Url::parse(pasted.trim()).ok().and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == "login_option")
                .map(|(_, v)| v.into_owned())
        });
        let method = LoginMethod::SocialRedirect.label(login_option.as_deref());
        let profile = tokens.profile_arn.clone();
        self.finish(
            &flow,
            method,
            tokens,
            None,
            social_sso_region(),
            None,
            profile,
        )
        .await;
        Ok(flow.snapshot())
    }

    /// Stops a flow that has not ended.
    pub fn cancel(&self, id: &str) -> Result<FlowView, GatewayError> {
        let flow = self.flow(id)?;
        let status = flow.snapshot().status;
        if status == FlowStatus::Finishing {
            // The user has signed in and the account is being stored: let it finish rather
            // than report "cancelled" for an account that then exists.
            return Err(GatewayError::conflict(
                "This sign-in has succeeded and is being stored; it can no longer be cancelled.",
            ));
        }
        if !status.is_final() {
            flow.cancel.send_replace(true);
            flow.end(FlowStatus::Cancelled, None);
        }
        Ok(flow.snapshot())
    }

    /// Polls until the user signed in, then resolves the profile and stores the account.
    async fn drive(
        self: Arc<Self>,
        flow: Arc<Flow>,
        method: LoginMethod,
        device: DeviceStart,
        client: Option<Registration>,
    ) {
        let clock = PollClock::new(device.interval, device.expires_in, self.slow_down_step);
        let http = self.ctx.http.clone();
        let urls = self.ctx.urls.clone();
        let device_code = device.device_code.clone();
        let poll = || {
            let http = http.clone();
            let urls = urls.clone();
            let client = client.clone();
            let method = method.clone();
            let device_code = device_code.clone();
            async move {
                match (&method, &client) {
                    (LoginMethod::Social { .. }, _) => {
                        social::poll_device(&http, &urls.auth_base(), &device_code).await
                    }
                    (_, Some(client)) => {
                        let (region, _) = oidc_target(&method);
                        oidc::poll_token(&http, &urls.oidc_base(region), client, &device_code).await
                    }
                    _ => super::poll::PollAnswer::Failed("no client registration".into()),
                }
            }
        };
        let progress = |p: PollProgress| {
            let (status, interval) = match p {
                PollProgress::Pending(i) => (FlowStatus::Pending, i),
                PollProgress::SlowedDown(i) => (FlowStatus::SlowDown, i),
            };
            let current = flow.snapshot();
            if current.status != status || current.interval_seconds != Some(interval.as_secs()) {
                flow.update(|v| {
                    v.status = status;
                    v.interval_seconds = Some(interval.as_secs());
                });
            }
        };
        let mut cancel = flow.cancel.subscribe();
        let cancelled = async move {
            let _ = cancel.wait_for(|c| *c).await;
        };
        let end = poll_until_done(clock, poll, progress, cancelled).await;
        let tokens = match end {
            PollEnd::Granted(tokens) => tokens,
            PollEnd::Expired => {
                return flow.end(
                    FlowStatus::Expired,
                    Some("The code expired before the sign-in finished: start again.".into()),
                )
            }
            PollEnd::Denied => {
                return flow.end(FlowStatus::Denied, Some("The sign-in was refused.".into()))
            }
            PollEnd::Failed(message) => return flow.end(FlowStatus::Failed, Some(message)),
            PollEnd::Cancelled => return flow.end(FlowStatus::Cancelled, None),
        };
        let label = method.label(None);
        match &method {
            LoginMethod::BuilderId => {
                self.finish(
                    &flow,
                    label,
                    tokens,
                    client,
                    "us-east-1".into(),
                    Some(BUILDER_ID_START_URL.into()),
                    Some(BUILDER_ID_PROFILE_ARN.into()),
                )
                .await
            }
            LoginMethod::Social { .. } | LoginMethod::SocialRedirect => {
                let profile = tokens
                    .profile_arn
                    .clone()
                    .or_else(|| Some(DEFAULT_SOCIAL_PROFILE_ARN.into()));
                self.finish(
                    &flow,
                    label,
                    tokens,
                    None,
                    social_sso_region(),
                    None,
                    profile,
                )
                .await
            }
            LoginMethod::IdentityCenter { start_url, region } => {
                let Some(profile) = self.pick_profile(&flow, &tokens).await else {
                    return;
                };
                self.finish(
                    &flow,
                    label,
                    tokens,
                    client,
                    region.clone(),
                    Some(start_url.clone()),
                    Some(profile),
                )
                .await
            }
        }
    }

    /// Identity Center: the one profile, the preferred one, or the operator's choice. `None`
    /// when the flow ended instead (no profile, cancelled, nobody chose).
    async fn pick_profile(&self, flow: &Flow, tokens: &LoginTokens) -> Option<String> {
        let listed = profiles::list(
            &self.ctx.http,
            &self.ctx.urls.profiles_url,
            &tokens.access_token,
        )
        .await;
        let listed = match listed {
            Ok(listed) => listed,
            Err(error) => {
                flow.end(FlowStatus::Failed, Some(error.message().to_owned()));
                return None;
            }
        };
        if let Some(preferred) = &flow.preferred_profile {
            if listed.iter().any(|p| &p.arn == preferred) {
                return Some(preferred.clone());
            }
        }
        match listed.len() {
            0 => {
                flow.end(
                    FlowStatus::Failed,
                    Some("This Identity Center user has no Kiro profile: ask your AWS administrator to subscribe it to Kiro.".into()),
                );
                None
            }
            1 => Some(listed[0].arn.clone()),
            _ => {
                let (sender, receiver) = oneshot::channel();
                *lock(&flow.choice) = Some(sender);
                flow.update(|v| {
                    v.status = FlowStatus::NeedsProfileChoice;
                    v.profiles = listed;
                    v.expires_at = Utc::now()
                        + chrono::Duration::from_std(HUMAN_WAIT)
                            .unwrap_or(chrono::Duration::zero());
                });
                let mut cancel = flow.cancel.subscribe();
                tokio::select! {
                    chosen = receiver => chosen.ok(),
                    () = tokio::time::sleep(HUMAN_WAIT) => {
                        flow.end(FlowStatus::Expired, Some("Nobody chose a profile in time.".into()));
                        None
                    }
                    _ = cancel.wait_for(|c| *c) => None,
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn finish(
        &self,
        flow: &Flow,
        method: String,
        tokens: LoginTokens,
        client: Option<Registration>,
        sso_region: String,
        start_url: Option<String>,
        profile_arn: Option<String>,
    ) {
        flow.update(|v| {
            v.status = FlowStatus::Finishing;
            v.profiles.clear();
        });
        let signed = SignedIn {
            method,
            refresh_token: tokens.refresh_token,
            client,
            sso_region,
            start_url,
            profile_arn,
            api_region: None,
        };
        match account::store(&self.ctx, &flow.caller, signed, flow.options.clone()).await {
            Ok(row) => {
                tracing::info!(account = row.id, "sign-in stored a new account");
                flow.update(|v| {
                    v.status = FlowStatus::Succeeded;
                    v.account = Some(row);
                });
            }
            Err(error) => flow.end(FlowStatus::Failed, Some(error.message().to_owned())),
        }
    }
}

fn oidc_target(method: &LoginMethod) -> (&str, &str) {
    match method {
        LoginMethod::IdentityCenter { start_url, region } => (region, start_url),
        _ => ("us-east-1", BUILDER_ID_START_URL),
    }
}

fn social_sso_region() -> String {
    super::urls::SOCIAL_REGION.to_owned()
}
