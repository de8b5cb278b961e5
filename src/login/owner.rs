//! The owner of a flow: the one process that polls the sign-in service, lists the profiles and
//! stores the account. It holds a lease on the flow (by the database's clock), renewed while it
//! runs; when the process stops, the lease lapses and another process takes the flow over from
//! where the store says it is ([`Logins::spawn_housekeeping`]).
//!
//! Every step is a compare-and-set write, so a cancel from another process, or a second owner
//! after a lapsed lease, can never make a flow end twice. The account is stored exactly once:
//! its name is fixed in the flow before the first attempt and names are unique, and an owner
//! that finds `finishing` looks for the account a previous owner may have stored first.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use kiro_layers::store::AccountRow;
use kiro_layers::GatewayError;
use tokio::sync::watch;

use super::account::{self, AccountOptions, SignedIn};
use super::flow::{lock, oidc_target, Logins, HUMAN_WAIT, LOOK_AGAIN};
use super::oidc::{self, BUILDER_ID_START_URL};
use super::poll::{poll_until_done, PollAnswer, PollClock, PollEnd, PollProgress};
use super::profiles::{self, Profile, BUILDER_ID_PROFILE_ARN, DEFAULT_SOCIAL_PROFILE_ARN};
use super::request::{FlowStatus, LoginMethod};
use super::social;
use super::stored::Record;
use super::LoginTokens;

/// Finished flows stay visible this long, then are swept.
const KEEP_FINISHED: Duration = Duration::from_secs(15 * 60);
/// How often finished flows are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// A flow stuck in `finishing` without tokens (the process exchanging a pasted address
/// stopped) ends this long after its expiry.
const FINISHING_GRACE: Duration = Duration::from_secs(120);

/// What a step of the owner loop leaves behind.
enum Step {
    /// Look at the stored flow again.
    Again,
    /// The store did not answer: wait a little, then look again.
    Retry(GatewayError),
    /// Another process holds the flow now.
    Lost,
}

impl Logins {
    pub(super) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// On shutdown: stops driving flows and ends this process's leases on them at once, so
    /// another process takes them over without waiting for the leases to lapse.
    pub async fn hand_over(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let ids: Vec<String> = lock(&self.driving).iter().cloned().collect();
        let mut handed = 0;
        for id in &ids {
            match self
                .store()
                .lease_login_flow(id, &self.me, Duration::ZERO)
                .await
            {
                Ok(true) => handed += 1,
                Ok(false) => {}
                Err(error) => tracing::warn!(flow = %id, "could not hand a sign-in over: {error}"),
            }
        }
        if handed > 0 {
            tracing::info!(
                flows = handed,
                "handed unfinished sign-ins over to the other processes"
            );
        }
    }

    /// Drives flow `id` in this process (whose lease it holds) unless it does already.
    pub(super) fn drive(self: &Arc<Self>, id: String) {
        if !lock(&self.driving).insert(id.clone()) {
            return;
        }
        let logins = Arc::clone(self);
        tokio::spawn(async move {
            logins.own(&id).await;
            lock(&logins.driving).remove(&id);
        });
    }

    /// Takes over flows whose process stopped and sweeps old ones, until this `Logins` is
    /// dropped. `serve` runs it; the CLI does not (it only drives its own flow).
    pub fn spawn_housekeeping(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let every = (self.lease / 2).clamp(Duration::from_millis(200), Duration::from_secs(15));
        tokio::spawn(async move {
            let mut last_sweep: Option<tokio::time::Instant> = None;
            loop {
                tokio::time::sleep(every).await;
                let Some(logins) = weak.upgrade() else { return };
                logins.adopt_orphans().await;
                if last_sweep.is_none_or(|at| at.elapsed() >= SWEEP_EVERY) {
                    last_sweep = Some(tokio::time::Instant::now());
                    match logins.store().sweep_login_flows(KEEP_FINISHED).await {
                        Ok(0) => {}
                        Ok(n) => tracing::debug!(swept = n, "old sign-in flows removed"),
                        Err(error) => tracing::warn!("could not sweep old sign-ins: {error}"),
                    }
                }
            }
        });
    }

    async fn adopt_orphans(self: &Arc<Self>) {
        if self.stopping() {
            return;
        }
        let orphans = match self.store().orphan_login_flows().await {
            Ok(orphans) => orphans,
            Err(error) => {
                tracing::warn!("could not look for abandoned sign-ins: {error}");
                return;
            }
        };
        for id in orphans {
            if lock(&self.driving).contains(&id) {
                continue;
            }
            match self
                .store()
                .lease_login_flow(&id, &self.me, self.lease)
                .await
            {
                Ok(true) => {
                    tracing::info!(flow = %id, "taking over a sign-in whose process stopped");
                    self.drive(id);
                }
                Ok(false) => {}
                Err(error) => tracing::warn!(flow = %id, "could not take over a sign-in: {error}"),
            }
        }
    }

    /// Runs flow `id` to its end while this process holds the lease.
    async fn own(self: &Arc<Self>, id: &str) {
        let (lost_tx, lost) = watch::channel(false);
        let renewer = {
            let logins = Arc::clone(self);
            let id = id.to_owned();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(logins.lease / 3).await;
                    if logins.stopping() {
                        break;
                    }
                    match logins
                        .store()
                        .lease_login_flow(&id, &logins.me, logins.lease)
                        .await
                    {
                        Ok(true) => {}
                        // Ended, or another process holds it now.
                        Ok(false) => break,
                        Err(error) => {
                            tracing::warn!(flow = %id, "could not renew a sign-in lease: {error}")
                        }
                    }
                }
                lost_tx.send_replace(true);
            })
        };
        while !*lost.borrow() {
            let record = match self.load(id).await {
                Ok(record) => record,
                Err(error) if error.status() == http::StatusCode::NOT_FOUND => break,
                Err(error) => {
                    tracing::warn!(flow = %id, "could not read a sign-in: {error}");
                    tokio::time::sleep(LOOK_AGAIN * 4).await;
                    continue;
                }
            };
            let step = match record.view.status {
                status if status.is_final() => break,
                FlowStatus::Pending | FlowStatus::SlowDown => self.poll(record, &lost).await,
                FlowStatus::NeedsProfileChoice => {
                    let why = "Nobody chose a profile in time.";
                    self.expire_when_due(record, why, Duration::ZERO, lost.clone())
                        .await
                }
                FlowStatus::WaitingForRedirect => {
                    let why = "Nobody pasted the address in time.";
                    self.expire_when_due(record, why, Duration::ZERO, lost.clone())
                        .await
                }
                FlowStatus::Finishing if record.secrets.tokens.is_none() => {
                    // Another process is exchanging a pasted address.
                    let why = "The process exchanging the pasted address stopped: start again.";
                    self.expire_when_due(record, why, FINISHING_GRACE, lost.clone())
                        .await
                }
                FlowStatus::Finishing => self.finish(record).await,
                _ => break,
            };
            match step {
                Step::Again => {}
                Step::Lost => break,
                Step::Retry(error) => {
                    tracing::warn!(flow = %id, "sign-in step failed, trying again: {error}");
                    tokio::time::sleep(LOOK_AGAIN * 4).await;
                }
            }
        }
        renewer.abort();
    }

    /// Waits (for a person, or another process) until the flow changes or `grace` after its
    /// expiry, then ends it: expired, or failed when stuck in `finishing`.
    async fn expire_when_due(
        &self,
        record: Record,
        why: &str,
        grace: Duration,
        mut lost: watch::Receiver<bool>,
    ) -> Step {
        let id = &record.view.id;
        let due = record.view.expires_at + chrono::Duration::from_std(grace).unwrap_or_default();
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if Utc::now() >= due {
                let status = if record.view.status == FlowStatus::Finishing {
                    FlowStatus::Failed
                } else {
                    FlowStatus::Expired
                };
                if let Some(step) = self.unless_mine(id).await {
                    return step;
                }
                let version = record.view.version;
                let ended = self
                    .modify(id, |r| {
                        let unchanged = r.view.version == version;
                        if unchanged {
                            r.view.status = status;
                            r.view.error = Some(why.to_owned());
                            r.view.profiles.clear();
                        }
                        Ok(unchanged)
                    })
                    .await;
                return ended.map_or_else(Step::Retry, |_| Step::Again);
            }
            match self.load(id).await {
                Ok(now) if now.view.version != record.view.version => return Step::Again,
                Ok(_) if *lost.borrow() => return Step::Again,
                Ok(_) => {}
                Err(error) => return Step::Retry(error),
            }
            tokio::select! {
                () = changed => {}
                _ = lost.changed() => {}
                () = tokio::time::sleep(LOOK_AGAIN * 2) => {}
            }
        }
    }

    /// Polls the sign-in service until the user signs in (then lists the profiles) or the flow
    /// ends.
    async fn poll(self: &Arc<Self>, record: Record, lost: &watch::Receiver<bool>) -> Step {
        let id = record.view.id.clone();
        let method = record.view.method.clone();
        let Some(device_code) = record.secrets.device_code.clone() else {
            return self.fail(&id, "the sign-in lost its device code").await;
        };
        let interval = Duration::from_secs(record.view.interval_seconds.unwrap_or(5));
        let left = (record.view.expires_at - Utc::now())
            .to_std()
            .unwrap_or_default();
        let clock = PollClock::new(interval, left, self.slow_down_step);
        let client = record.secrets.client.clone();
        let poll = || {
            let http = self.ctx.http.clone();
            let urls = self.ctx.urls.clone();
            let (client, method, device_code) =
                (client.clone(), method.clone(), device_code.clone());
            async move {
                match (&method, &client) {
                    (LoginMethod::Social { .. }, _) => {
                        social::poll_device(&http, &urls.auth_base(), &device_code).await
                    }
                    (_, Some(client)) => {
                        let (region, _) = oidc_target(&method);
                        oidc::poll_token(&http, &urls.oidc_base(region), client, &device_code).await
                    }
                    _ => PollAnswer::Failed("no client registration".into()),
                }
            }
        };
        // The poll loop reports progress synchronously; the watcher below writes it.
        let progress = Arc::new(Mutex::new(None::<PollProgress>));
        let report = {
            let progress = Arc::clone(&progress);
            move |p: PollProgress| *lock(&progress) = Some(p)
        };
        let watcher = self.watch_while_polling(&id, &progress, lost.clone());
        let tokens = match poll_until_done(clock, poll, report, watcher).await {
            PollEnd::Granted(tokens) => tokens,
            // Cancelled here, or no longer ours: look at the store again.
            PollEnd::Cancelled => return Step::Again,
            PollEnd::Expired => {
                let why = "The code expired before the sign-in finished: start again.";
                return self.ended(&id, FlowStatus::Expired, Some(why.into())).await;
            }
            PollEnd::Denied => {
                let why = "The sign-in was refused.";
                return self.ended(&id, FlowStatus::Denied, Some(why.into())).await;
            }
            PollEnd::Failed(message) => {
                return self.ended(&id, FlowStatus::Failed, Some(message)).await
            }
        };
        self.signed_in(record, tokens).await
    }

    /// While polling: writes progress, and returns when the flow stopped being ours to poll
    /// (cancelled elsewhere, or the lease lost).
    async fn watch_while_polling(
        &self,
        id: &str,
        progress: &Mutex<Option<PollProgress>>,
        mut lost: watch::Receiver<bool>,
    ) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let report = lock(progress).take();
            let polling = |s: FlowStatus| matches!(s, FlowStatus::Pending | FlowStatus::SlowDown);
            let now = match report {
                Some(p) => {
                    let (status, interval) = match p {
                        PollProgress::Pending(i) => (FlowStatus::Pending, i),
                        PollProgress::SlowedDown(i) => (FlowStatus::SlowDown, i),
                    };
                    self.modify(id, |r| {
                        let differs = r.view.status != status
                            || r.view.interval_seconds != Some(interval.as_secs());
                        let write = polling(r.view.status) && differs;
                        if write {
                            r.view.status = status;
                            r.view.interval_seconds = Some(interval.as_secs());
                        }
                        Ok(write)
                    })
                    .await
                }
                None => self.load(id).await,
            };
            match now {
                Ok(r) if !polling(r.view.status) => return,
                Ok(_) => {}
                // The store is away: keep polling; the next look tries again.
                Err(error) => tracing::warn!(flow = %id, "could not read a sign-in: {error}"),
            }
            if *lost.borrow() {
                return;
            }
            tokio::select! {
                () = changed => {}
                _ = lost.changed() => {}
                () = tokio::time::sleep(LOOK_AGAIN * 2) => {}
            }
        }
    }

    /// The user signed in: the profile is known (Builder ID, social, one Identity Center
    /// profile, the preferred one) and the flow moves to `finishing`, or the operator chooses.
    async fn signed_in(&self, record: Record, tokens: LoginTokens) -> Step {
        let id = record.view.id.clone();
        let choice = match &record.view.method {
            LoginMethod::BuilderId => Ok((Some(BUILDER_ID_PROFILE_ARN.to_owned()), Vec::new())),
            LoginMethod::Social { .. } | LoginMethod::SocialRedirect => {
                let arn = tokens.profile_arn.clone();
                Ok((
                    arn.or_else(|| Some(DEFAULT_SOCIAL_PROFILE_ARN.to_owned())),
                    Vec::new(),
                ))
            }
            LoginMethod::IdentityCenter { .. } => {
                self.identity_center_profile(&record, &tokens).await
            }
        };
        let (profile, listed) = match choice {
            Ok(choice) => choice,
            Err(message) => return self.fail(&id, &message).await,
        };
        if let Some(step) = self.unless_mine(&id).await {
            return step;
        }
        let written = self
            .modify(&id, |r| {
                let ours = matches!(r.view.status, FlowStatus::Pending | FlowStatus::SlowDown);
                if !ours {
                    return Ok(false);
                }
                r.secrets.tokens = Some(tokens.clone());
                match &profile {
                    Some(arn) => {
                        r.view.status = FlowStatus::Finishing;
                        r.plan.profile_arn = Some(arn.clone());
                        r.plan.label = Some(r.view.method.label(None));
                    }
                    None => {
                        r.view.status = FlowStatus::NeedsProfileChoice;
                        r.view.profiles = listed.clone();
                        r.view.expires_at =
                            Utc::now() + chrono::Duration::from_std(HUMAN_WAIT).unwrap_or_default();
                    }
                }
                Ok(true)
            })
            .await;
        written.map_or_else(Step::Retry, |_| Step::Again)
    }

    /// Identity Center: the one profile or the preferred one, or (`None`) the listed
    /// profiles to choose from; `Err` says why the flow fails.
    async fn identity_center_profile(
        &self,
        record: &Record,
        tokens: &LoginTokens,
    ) -> Result<(Option<String>, Vec<Profile>), String> {
        let listed = profiles::list(
            &self.ctx.http,
            &self.ctx.urls.profiles_url,
            &tokens.access_token,
        )
        .await
        .map_err(|e| e.message().to_owned())?;
        if let Some(preferred) = &record.plan.preferred_profile {
            if listed.iter().any(|p| &p.arn == preferred) {
                return Ok((Some(preferred.clone()), Vec::new()));
            }
        }
        match listed.as_slice() {
            [] => Err("This Identity Center user has no Kiro profile: ask your AWS administrator to subscribe it to Kiro.".into()),
            [one] => Ok((Some(one.arn.clone()), Vec::new())),
            _ => Ok((None, listed)),
        }
    }

    /// `finishing` with tokens: verifies and stores the account (unless an earlier owner did),
    /// then `succeeded`.
    async fn finish(&self, record: Record) -> Step {
        let id = record.view.id.clone();
        if let Some(step) = self.unless_mine(&id).await {
            return step;
        }
        match self.stored_before(&record).await {
            Ok(Some(account)) => return self.succeeded(&id, account).await,
            Ok(None) => {}
            Err(error) => return Step::Retry(error),
        }
        let Some(tokens) = record.secrets.tokens.clone() else {
            return Step::Again;
        };
        let method = &record.view.method;
        let (sso_region, start_url) = match method {
            LoginMethod::BuilderId => (
                "us-east-1".to_owned(),
                Some(BUILDER_ID_START_URL.to_owned()),
            ),
            LoginMethod::IdentityCenter { start_url, region } => {
                (region.clone(), Some(start_url.clone()))
            }
            LoginMethod::Social { .. } | LoginMethod::SocialRedirect => {
                (super::urls::SOCIAL_REGION.to_owned(), None)
            }
        };
        let signed = SignedIn {
            method: record
                .plan
                .label
                .clone()
                .unwrap_or_else(|| method.label(None)),
            refresh_token: tokens.refresh_token,
            client: record.secrets.client.clone(),
            sso_region,
            start_url,
            profile_arn: record.plan.profile_arn.clone(),
            api_region: None,
        };
        let options = AccountOptions {
            name: record.plan.name.clone(),
            max_concurrency: record.plan.max_concurrency,
        };
        match account::store(&self.ctx, &record.caller(), signed, options).await {
            Ok(account) => {
                tracing::info!(account = account.id, "sign-in stored a new account");
                self.succeeded(&id, account).await
            }
            // Another owner may have stored it meanwhile (the name is taken then).
            Err(error) => match self.stored_before(&record).await {
                Ok(Some(account)) => self.succeeded(&id, account).await,
                _ => self.fail(&id, error.message()).await,
            },
        }
    }

    /// The account an earlier attempt at this flow stored: its name, younger than the flow,
    /// and the same client when there is one.
    async fn stored_before(&self, record: &Record) -> Result<Option<AccountRow>, GatewayError> {
        let Some(name) = &record.plan.name else {
            return Ok(None);
        };
        let client_id = record.secrets.client.as_ref().map(|c| &c.client_id);
        // Process clocks may differ a little from the database's.
        let since = record.plan.started_at - chrono::Duration::minutes(5);
        let accounts = self.store().list_accounts().await?;
        Ok(accounts.into_iter().find(|a| {
            &a.name == name && a.created_at >= since && a.client_id.as_ref() == client_id
        }))
    }

    async fn succeeded(&self, id: &str, account: AccountRow) -> Step {
        let written = self
            .modify(id, |r| {
                let ours = r.view.status == FlowStatus::Finishing;
                if ours {
                    r.view.status = FlowStatus::Succeeded;
                    r.plan.account_id = Some(account.id);
                }
                Ok(ours)
            })
            .await;
        written.map_or_else(Step::Retry, |_| Step::Again)
    }

    /// `None` while this process holds the flow's lease (renewing it), else the step to take.
    /// The owner's decisions (a poll's answer, storing the account, an expiry) are only written
    /// after this check, so a process paused past its lease does not overrule the one that
    /// took the flow over.
    async fn unless_mine(&self, id: &str) -> Option<Step> {
        if self.stopping() {
            return Some(Step::Lost);
        }
        match self
            .store()
            .lease_login_flow(id, &self.me, self.lease)
            .await
        {
            Ok(true) => None,
            Ok(false) => Some(Step::Lost),
            Err(error) => Some(Step::Retry(error.into())),
        }
    }

    async fn ended(&self, id: &str, status: FlowStatus, error: Option<String>) -> Step {
        if let Some(step) = self.unless_mine(id).await {
            return step;
        }
        self.end(id, status, error)
            .await
            .map_or_else(Step::Retry, |_| Step::Again)
    }

    async fn fail(&self, id: &str, message: &str) -> Step {
        self.ended(id, FlowStatus::Failed, Some(message.to_owned()))
            .await
    }
}
