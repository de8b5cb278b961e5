//! Which `profileArn` a new account sends (console-and-login notes C.9): the constant kiro-cli
//! uses for Builder ID, the one the social sign-in returned (else kiro-cli's default), and for
//! IAM Identity Center the list `ListAvailableProfiles` gives (a choice when it has several).

use kiro_layers::GatewayError;
use serde::Serialize;
use serde_json::json;

use super::post_json;

/// kiro-cli's `BUILDER_ID_PROFILE_ARN`.
pub const BUILDER_ID_PROFILE_ARN: &str =
    "arn:aws:codewhisperer:us-east-1:638616132270:profile/AAAACCCCXXXX";

/// kiro-cli's `DEFAULT_SOCIAL_PROFILE_ARN`, used when a social sign-in returns none.
pub const DEFAULT_SOCIAL_PROFILE_ARN: &str =
    "arn:aws:codewhisperer:us-east-1:699475941385:profile/EHGA3GRVQMUK";

/// The regions kiro-cli asks for profiles (its endpoint list outside the gov partition).
pub const PROFILE_REGIONS: [&str; 2] = ["us-east-1", "eu-central-1"];

/// At most this many pages per region (a guard against a service that keeps paging).
const MAX_PAGES: usize = 20;

/// One Kiro profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Profile {
    /// `arn:aws:codewhisperer:<region>:<account>:profile/<id>`.
    pub arn: String,
    /// Display name.
    pub name: String,
}

/// `ListAvailableProfiles` in every region of [`PROFILE_REGIONS`], de-duplicated by ARN.
/// `profiles_url` is a template with `{region}`.
pub async fn list(
    http: &reqwest::Client,
    profiles_url: &str,
    access_token: &str,
) -> Result<Vec<Profile>, GatewayError> {
    let mut found: Vec<Profile> = Vec::new();
    let mut last_error = None;
    for region in PROFILE_REGIONS {
        let base = profiles_url.replace("{region}", region);
        match list_in(http, base.trim_end_matches('/'), access_token).await {
            Ok(profiles) => {
                for profile in profiles {
                    if !found.iter().any(|p| p.arn == profile.arn) {
                        found.push(profile);
                    }
                }
            }
            Err(error) => last_error = Some(error),
        }
    }
    match (found.is_empty(), last_error) {
        (true, Some(error)) => Err(error),
        _ => Ok(found),
    }
}

async fn list_in(
    http: &reqwest::Client,
    base: &str,
    access_token: &str,
) -> Result<Vec<Profile>, GatewayError> {
    let bearer = format!("Bearer {access_token}");
    let headers = [
        ("content-type", "application/x-amz-json-1.0"),
        (
            "x-amz-target",
            "AmazonCodeWhispererService.ListAvailableProfiles",
        ),
        ("authorization", bearer.as_str()),
    ];
    let mut profiles = Vec::new();
    let mut next_token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let body = match &next_token {
            Some(token) => json!({ "maxResults": 50, "nextToken": token }),
            None => json!({ "maxResults": 50 }),
        };
        let (status, answer) = post_json(http, &format!("{base}/"), &body, &headers).await?;
        if status != 200 {
            return Err(GatewayError::upstream_stream(format!(
                "ListAvailableProfiles answered HTTP {status}: {}",
                super::short(&answer.to_string())
            )));
        }
        for profile in answer["profiles"].as_array().into_iter().flatten() {
            if let Some(arn) = profile["arn"].as_str() {
                profiles.push(Profile {
                    arn: arn.to_owned(),
                    name: profile["profileName"].as_str().unwrap_or(arn).to_owned(),
                });
            }
        }
        next_token = answer["nextToken"]
            .as_str()
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        if next_token.is_none() {
            break;
        }
    }
    Ok(profiles)
}
