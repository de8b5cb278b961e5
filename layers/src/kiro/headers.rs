//! The headers of every Kiro API call (kiro-protocol.md §1.11), shaped like the Kiro IDE's.
//!
//! The user agent carries a realistic `KiroIDE-x.y.z-{fingerprint}` token: the service is
//! reported to read the IDE version from it and to apply stricter history limits to unknown or
//! old versions (§1.11, UNCONFIRMED), so it must look like a current IDE.

use http::header::{
    HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONNECTION, CONTENT_TYPE, USER_AGENT,
};
use sha2::{Digest, Sha256};

use crate::traits::Credential;

/// The IDE version claimed in the user agent.
pub const KIRO_IDE_VERSION: &str = "0.7.45";
/// The AWS JS SDK version the IDE reports.
const AWS_SDK_JS_VERSION: &str = "1.0.27";

/// SHA-256 hex (64 lower-case digits) of `"{seed}-kiro-gateway"`. kiro-gateway seeds it with
/// `"{hostname}-{username}"` and falls back to `"default"`.
pub fn fingerprint(seed: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(seed.as_bytes());
    hasher.update(b"-kiro-gateway");
    hex::encode(hasher.finalize())
}

/// Headers for one `generateAssistantResponse` (or other Kiro API) attempt.
///
/// `streaming` with `keep_alive == false` adds `Connection: close`, which kiro-gateway uses to
/// avoid CLOSE_WAIT leaks on long streams ([IS#38]); pooled callers pass `keep_alive = true`.
/// A fresh `amz-sdk-invocation-id` is generated on every call, so call this once per attempt.
pub fn kiro_headers(credential: &Credential, streaming: bool, keep_alive: bool) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(10);
    match HeaderValue::try_from(format!("Bearer {}", credential.access_token)) {
        Ok(mut value) => {
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        // A token with control characters cannot be sent; without the header Kiro answers 401/403,
        // which the pool already handles (refresh, then rest the account). The token is not logged.
        Err(_) => tracing::warn!(
            account = %credential.account_id,
            "access token is not a valid header value; sending the request without it"
        ),
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));

    let ide_token = format!(
        "KiroIDE-{KIRO_IDE_VERSION}-{}",
        user_agent_fingerprint(&credential.fingerprint)
    );
    let user_agent = format!(
        "aws-sdk-js/{AWS_SDK_JS_VERSION} ua/2.1 os/win32#10.0.19044 lang/js md/nodejs#22.21.1 \
         api/codewhispererstreaming#{AWS_SDK_JS_VERSION} m/E {ide_token}"
    );
    let amz_user_agent = format!("aws-sdk-js/{AWS_SDK_JS_VERSION} {ide_token}");
    // Both are built from ASCII constants and hex digits, so they are always valid.
    if let Ok(value) = HeaderValue::try_from(user_agent) {
        headers.insert(USER_AGENT, value);
    }
    if let Ok(value) = HeaderValue::try_from(amz_user_agent) {
        headers.insert(HeaderName::from_static("x-amz-user-agent"), value);
    }
    headers.insert(
        HeaderName::from_static("x-amzn-codewhisperer-optout"),
        HeaderValue::from_static("true"),
    );
    headers.insert(
        HeaderName::from_static("x-amzn-kiro-agent-mode"),
        HeaderValue::from_static("vibe"),
    );
    if let Ok(value) = HeaderValue::try_from(uuid::Uuid::new_v4().to_string()) {
        headers.insert(HeaderName::from_static("amz-sdk-invocation-id"), value);
    }
    // Constant on purpose: kiro-gateway never increments it on retries either.
    headers.insert(
        HeaderName::from_static("amz-sdk-request"),
        HeaderValue::from_static("attempt=1; max=3"),
    );
    if streaming && !keep_alive {
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    if credential.external_idp {
        headers.insert(
            HeaderName::from_static("tokentype"),
            HeaderValue::from_static("EXTERNAL_IDP"),
        );
    }
    headers
}

/// The credential's fingerprint when it already is one (64 hex digits); otherwise it is taken as
/// a seed and hashed, so the user agent always carries the IDE's 64-hex machine id shape.
fn user_agent_fingerprint(configured: &str) -> String {
    if configured.len() == 64 && configured.bytes().all(|b| b.is_ascii_hexdigit()) {
        configured.to_ascii_lowercase()
    } else if configured.is_empty() {
        fingerprint("default")
    } else {
        fingerprint(configured)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credential(fingerprint: &str, external_idp: bool) -> Credential {
        Credential {
            account_id: "acct-1".to_owned(),
            access_token: "tok-123".to_owned(),
            profile_arn: None,
            api_base: "https://runtime.us-east-1.kiro.dev".to_owned(),
            fingerprint: fingerprint.to_owned(),
            external_idp,
            kind: crate::traits::AccountKind::KIRO,
            client_key: None,
        }
    }

    fn get<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
        headers.get(name).and_then(|v| v.to_str().ok())
    }

    #[test]
    fn fingerprint_is_sha256_hex_of_seed_with_suffix() {
        // sha256("default-kiro-gateway"), computed independently with `sha256sum`.
        assert_eq!(fingerprint("default"), EXPECTED_DEFAULT_FINGERPRINT);
        assert_eq!(fingerprint("host-user").len(), 64);
        assert_ne!(fingerprint("host-user"), fingerprint("default"));
    }

    const EXPECTED_DEFAULT_FINGERPRINT: &str =
        "5fc179a07268c41275a137e31c4b5f0f4f7e36f5ed313fc3a8d18602d79f95b2";

    #[test]
    fn carries_the_ide_header_set() {
        let fp = fingerprint("box-alice");
        let headers = kiro_headers(&credential(&fp, false), true, true);
        assert_eq!(get(&headers, "authorization"), Some("Bearer tok-123"));
        assert!(headers.get("authorization").unwrap().is_sensitive());
        assert_eq!(get(&headers, "content-type"), Some("application/json"));
        let ua = get(&headers, "user-agent").unwrap();
        assert!(ua.starts_with("aws-sdk-js/1.0.27 ua/2.1 "), "{ua}");
        assert!(ua.ends_with(&format!(" m/E KiroIDE-0.7.45-{fp}")), "{ua}");
        assert_eq!(
            get(&headers, "x-amz-user-agent"),
            Some(format!("aws-sdk-js/1.0.27 KiroIDE-0.7.45-{fp}").as_str())
        );
        assert_eq!(get(&headers, "x-amzn-codewhisperer-optout"), Some("true"));
        assert_eq!(get(&headers, "x-amzn-kiro-agent-mode"), Some("vibe"));
        assert_eq!(get(&headers, "amz-sdk-request"), Some("attempt=1; max=3"));
        assert!(headers.get("connection").is_none());
        assert!(headers.get("tokentype").is_none());
    }

    #[test]
    fn invocation_id_is_a_fresh_uuid_v4() {
        let cred = credential("", false);
        let first = kiro_headers(&cred, false, true);
        let second = kiro_headers(&cred, false, true);
        let id = uuid::Uuid::parse_str(get(&first, "amz-sdk-invocation-id").unwrap()).unwrap();
        assert_eq!(id.get_version_num(), 4);
        assert_ne!(
            get(&first, "amz-sdk-invocation-id"),
            get(&second, "amz-sdk-invocation-id")
        );
    }

    #[test]
    fn connection_close_only_for_streaming_without_keep_alive() {
        let cred = credential("", false);
        assert_eq!(
            get(&kiro_headers(&cred, true, false), "connection"),
            Some("close")
        );
        assert!(kiro_headers(&cred, true, true).get("connection").is_none());
        assert!(kiro_headers(&cred, false, false)
            .get("connection")
            .is_none());
    }

    #[test]
    fn external_idp_adds_token_type() {
        let headers = kiro_headers(&credential("", true), true, true);
        assert_eq!(get(&headers, "tokentype"), Some("EXTERNAL_IDP"));
    }

    #[test]
    fn non_hex_fingerprint_is_hashed_and_empty_uses_default() {
        let ua = |fp: &str| {
            get(
                &kiro_headers(&credential(fp, false), false, true),
                "x-amz-user-agent",
            )
            .unwrap()
            .to_owned()
        };
        assert!(ua("").ends_with(&fingerprint("default")));
        assert!(ua("my machine").ends_with(&fingerprint("my machine")));
    }

    #[test]
    fn invalid_token_is_left_out_instead_of_panicking() {
        let mut cred = credential("", false);
        cred.access_token = "bad\ntoken".to_owned();
        let headers = kiro_headers(&cred, true, true);
        assert!(headers.get("authorization").is_none());
        assert_eq!(get(&headers, "content-type"), Some("application/json"));
    }
}
