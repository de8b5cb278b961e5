//! Where the sign-in flows send their calls. Every URL is configurable (the defaults are the
//! real hosts) so tests and `--demo` point them at the fake Kiro.

use clap::Args;
use kiro_layers::kiro::auth::Endpoints;

/// The sign-in options that `serve` and `account login` share (the URLs, and the lease) (the OIDC, desktop-auth and API
/// URLs are the refresh ones, `KIRO_OIDC_URL`, `KIRO_DESKTOP_AUTH_URL`, `KIRO_API_URL`).
#[derive(Debug, Clone, Args)]
pub struct LoginUrlArgs {
    /// `ListAvailableProfiles` base URL (IAM Identity Center profiles); `{region}` is replaced
    /// by each profile region (us-east-1, eu-central-1).
    #[arg(
        long = "kiro-profiles-url",
        env = "KIRO_PROFILES_URL",
        default_value = "https://q.{region}.amazonaws.com"
    )]
    pub kiro_profiles_url: String,

    /// Kiro sign-in portal for the Google / GitHub paste-the-address fallback.
    #[arg(
        long = "kiro-signin-url",
        env = "KIRO_SIGNIN_URL",
        default_value = "https://app.kiro.dev/signin"
    )]
    pub kiro_signin_url: String,

    /// Seconds a process holds a sign-in flow it polls for; it renews the hold while it runs,
    /// and when the process stops another process on the same database takes the flow over
    /// once the hold lapses.
    #[arg(
        long = "login-lease-seconds",
        env = "LOGIN_LEASE_SECONDS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..=3600)
    )]
    pub login_lease_seconds: u64,
}

impl LoginUrlArgs {
    /// How long a process holds a flow it polls for.
    pub fn lease(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.login_lease_seconds)
    }
}

/// Every URL a sign-in uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginUrls {
    /// The refresh endpoints (OIDC, desktop auth, API), also used to verify a new account.
    pub endpoints: Endpoints,
    /// `ListAvailableProfiles`, a template with `{region}`.
    pub profiles_url: String,
    /// The sign-in portal.
    pub signin_url: String,
}

impl Default for LoginUrls {
    fn default() -> Self {
        LoginUrls {
            endpoints: Endpoints::default(),
            profiles_url: "https://q.{region}.amazonaws.com".to_owned(),
            signin_url: "https://app.kiro.dev/signin".to_owned(),
        }
    }
}

impl LoginUrls {
    /// From the refresh endpoints and the sign-in options.
    pub fn new(endpoints: Endpoints, args: &LoginUrlArgs) -> Self {
        LoginUrls {
            endpoints,
            profiles_url: args.kiro_profiles_url.clone(),
            signin_url: args.kiro_signin_url.clone(),
        }
    }

    /// Every URL at one base (the fake Kiro): the fake serves all of them on one port.
    pub fn all_at(base: &str) -> Self {
        let base = base.trim_end_matches('/');
        LoginUrls {
            endpoints: Endpoints::all_at(base),
            profiles_url: base.to_owned(),
            signin_url: format!("{base}/signin"),
        }
    }

    /// The OIDC base in `region`.
    pub fn oidc_base(&self, region: &str) -> String {
        self.endpoints
            .oidc_token_url(region)
            .trim_end_matches("/token")
            .to_owned()
    }

    /// The Kiro auth service base (social sign-in lives in us-east-1, like its refresh).
    pub fn auth_base(&self) -> String {
        self.endpoints
            .desktop_refresh_url(SOCIAL_REGION)
            .trim_end_matches("/refreshToken")
            .to_owned()
    }
}

/// The region of Kiro's social sign-in service (`prod.us-east-1.auth.desktop.kiro.dev`).
pub const SOCIAL_REGION: &str = "us-east-1";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_real_hosts() {
        let urls = LoginUrls::default();
        assert_eq!(
            urls.oidc_base("eu-west-1"),
            "https://oidc.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            urls.auth_base(),
            "https://prod.us-east-1.auth.desktop.kiro.dev"
        );
        let fake = LoginUrls::all_at("http://127.0.0.1:9/");
        assert_eq!(fake.oidc_base("eu-west-1"), "http://127.0.0.1:9");
        assert_eq!(fake.signin_url, "http://127.0.0.1:9/signin");
    }
}
