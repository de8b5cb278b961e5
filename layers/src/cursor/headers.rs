//! The request headers of the chat call (cursor-protocol.md §4) and `x-cursor-checksum`.
//!
//! Values that drift (the client version above all: Cursor refuses versions a few months old)
//! are settings in [`CursorConfig`] with the current defaults; docs/cursor.md says how to update
//! them. Per-account values (machine id, client key, session id) are stable per account, since
//! churning them is tied to "Too many computers" locks.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use sha2::{Digest, Sha256};

use crate::traits::Credential;

/// The real host of the chat API.
pub const DEFAULT_API_BASE: &str = "https://api2.cursor.sh";
/// The chat RPC path.
pub const CHAT_PATH: &str = "/aiserver.v1.ChatService/StreamUnifiedChatWithTools";
/// The model list RPC path.
pub const MODELS_PATH: &str = "/aiserver.v1.AiService/AvailableModels";
/// The refresh endpoint path.
pub const REFRESH_PATH: &str = "/oauth/token";
/// The website that upgrades a browser cookie to a session token (§5.3).
pub const DEFAULT_WEBSITE_URL: &str = "https://cursor.com";
/// The website path of the upgrade (called with the browser cookie).
pub const UPGRADE_PATH: &str = "/api/auth/loginDeepCallbackControl";
/// The API path polled for the upgraded tokens (§5.2: 404 while pending, 200 with the tokens).
pub const POLL_PATH: &str = "/auth/poll";
/// `x-cursor-client-version` default: the newest version a public proxy reported working
/// (3.8.24, 2026-06; cursor-protocol.md §0.3). UNCONFIRMED to still be accepted: a setting.
pub const DEFAULT_CLIENT_VERSION: &str = "3.8.24";
/// `user-agent` of the IDE's Connect client (seen in the real 2.0.77 capture).
pub const DEFAULT_USER_AGENT: &str = "connect-es/1.6.1";
/// The OAuth client id of the refresh call (§5.4).
pub const DEFAULT_OAUTH_CLIENT_ID: &str = "KbZUR41cY7W6zRSdpSUJ7I7mLYBKOCmB";

/// Settings of the Cursor upstream.
#[derive(Debug, Clone)]
pub struct CursorConfig {
    /// Base URL (`https://api2.cursor.sh`; an `http://` URL means HTTP/2 without TLS).
    pub api_base: String,
    /// `x-cursor-client-version` (`CURSOR_CLIENT_VERSION`).
    pub client_version: String,
    /// `user-agent`.
    pub user_agent: String,
    /// `x-cursor-timezone` (an IANA zone).
    pub timezone: String,
    /// `x-ghost-mode` (Cursor's privacy mode).
    pub ghost_mode: bool,
    /// Gzip the request envelope (both are accepted; the proxies disagree).
    pub gzip_requests: bool,
    /// OAuth client id of the refresh call.
    pub oauth_client_id: String,
    /// Longest silence between two chunks of an answer.
    pub read_timeout: Duration,
    /// Largest answer frame accepted.
    pub max_frame: usize,
}

impl Default for CursorConfig {
    fn default() -> Self {
        CursorConfig {
            api_base: DEFAULT_API_BASE.to_owned(),
            client_version: DEFAULT_CLIENT_VERSION.to_owned(),
            user_agent: DEFAULT_USER_AGENT.to_owned(),
            timezone: "UTC".to_owned(),
            ghost_mode: true,
            gzip_requests: false,
            oauth_client_id: DEFAULT_OAUTH_CLIENT_ID.to_owned(),
            read_timeout: Duration::from_secs(300),
            max_frame: super::envelope::DEFAULT_MAX_FRAME,
        }
    }
}

/// The 8-character time prefix of `x-cursor-checksum`: `k = unix_ms / 1e6` laid out the way the
/// IDE's JavaScript does (shift counts mod 32), XOR-chained from 165, URL-safe base64.
pub fn checksum_prefix(unix_ms: u64) -> String {
    let k = unix_ms / 1_000_000;
    let mut bytes = [
        (k >> 8) as u8,
        k as u8,
        (k >> 24) as u8,
        (k >> 16) as u8,
        (k >> 8) as u8,
        k as u8,
    ];
    let mut prev = 165u8;
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = (*byte ^ prev).wrapping_add(i as u8);
        prev = *byte;
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The `k` a checksum prefix encodes, or `None` if it is not one (the fake's time check).
pub fn checksum_time(prefix: &str) -> Option<u64> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(prefix)
        .ok()?;
    let bytes: [u8; 6] = bytes.try_into().ok()?;
    let mut plain = [0u8; 6];
    let mut prev = 165u8;
    for (i, &byte) in bytes.iter().enumerate() {
        plain[i] = byte.wrapping_sub(i as u8) ^ prev;
        prev = byte;
    }
    // Bytes 2..6 hold k's low 32 bits big-endian; 0..2 repeat its low 16.
    if plain[0..2] != plain[4..6] {
        return None;
    }
    Some(u64::from(u32::from_be_bytes([
        plain[2], plain[3], plain[4], plain[5],
    ])))
}

/// `x-cursor-checksum`: time prefix, machine id, `/`, a second machine hash.
pub fn checksum(unix_ms: u64, machine_id: &str) -> String {
    let mac = hex::encode(Sha256::digest(format!("{machine_id}/mac")));
    format!("{}{machine_id}/{mac}", checksum_prefix(unix_ms))
}

/// A stable 64-hex id derived from the account (machine id or client key), for accounts that
/// were stored without one.
pub fn derived_id(account_id: &str, purpose: &str) -> String {
    hex::encode(Sha256::digest(format!(
        "kiro-gateway/cursor/{purpose}/{account_id}"
    )))
}

/// The headers of one chat call as `credential`'s account.
pub fn chat_headers(config: &CursorConfig, credential: &Credential) -> HeaderMap {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let machine_id = if is_hex64(&credential.fingerprint) {
        credential.fingerprint.clone()
    } else {
        derived_id(&credential.account_id, "machine")
    };
    let client_key = credential
        .client_key
        .clone()
        .filter(|k| is_hex64(k))
        .unwrap_or_else(|| derived_id(&credential.account_id, "client-key"));
    // Stable per account: the first 16 bytes of a hash of the client key, shaped as a UUID.
    let digest = Sha256::digest(client_key.as_bytes());
    let mut seed = [0u8; 16];
    seed.copy_from_slice(&digest[..16]);
    let session_id = uuid::Builder::from_random_bytes(seed).into_uuid();
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    };
    put(
        "authorization",
        format!("Bearer {}", credential.access_token),
    );
    put("content-type", "application/connect+proto".into());
    put("connect-protocol-version", "1".into());
    put("connect-accept-encoding", "gzip".into());
    if config.gzip_requests {
        put("connect-content-encoding", "gzip".into());
    }
    put("user-agent", config.user_agent.clone());
    put("x-cursor-client-version", config.client_version.clone());
    put("x-cursor-client-type", "ide".into());
    put("x-cursor-checksum", checksum(now_ms, &machine_id));
    put("x-client-key", client_key);
    put("x-session-id", session_id.to_string());
    put("x-request-id", uuid::Uuid::new_v4().to_string());
    put("x-amzn-trace-id", format!("Root={}", uuid::Uuid::new_v4()));
    put("x-cursor-timezone", config.timezone.clone());
    put("x-ghost-mode", config.ghost_mode.to_string());
    put("x-cursor-streaming", "true".into());
    put("x-new-onboarding-completed", "false".into());
    headers
}

/// 64 lower-case hex digits.
pub fn is_hex64(value: &str) -> bool {
    value.len() == 64
        && value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_matches_the_real_2_0_77_capture() {
        // k = 1 766 010 gives the prefix of the real IDE header (tests/data/cursor/*.http).
        let prefix = checksum_prefix(1_766_010 * 1_000_000 + 123_456);
        assert_eq!(prefix, "Vy4wLeOe");
        let real = include_str!("../../test_data/cursor/nixos-cursor.headers-2.0.77.http");
        assert!(real.contains(&format!("X-Cursor-Checksum: {prefix}")));
        assert_eq!(checksum_time(&prefix), Some(1_766_010));
        assert_eq!(checksum_time("paaotUs2"), None, "the wrong (64-bit) layout");
    }

    #[test]
    fn headers_carry_the_settings_and_stable_per_account_ids() {
        let credential = Credential {
            account_id: "7".into(),
            kind: crate::traits::AccountKind::CURSOR,
            access_token: "eyJ.token".into(),
            profile_arn: None,
            api_base: DEFAULT_API_BASE.into(),
            fingerprint: "ab".repeat(32),
            external_idp: false,
            client_key: Some("cd".repeat(32)),
        };
        let config = CursorConfig {
            client_version: "9.9.9".into(),
            ..CursorConfig::default()
        };
        let one = chat_headers(&config, &credential);
        let two = chat_headers(&config, &credential);
        assert_eq!(one["x-cursor-client-version"], "9.9.9");
        assert_eq!(one["x-client-key"], "cd".repeat(32).as_str());
        assert_eq!(one["x-session-id"], two["x-session-id"]);
        assert_ne!(one["x-request-id"], two["x-request-id"]);
        let sum = one["x-cursor-checksum"].to_str().unwrap();
        assert_eq!(sum.len(), 137);
        assert_eq!(&sum[8..72], "ab".repeat(32));
        assert_eq!(one["authorization"], "Bearer eyJ.token");
        assert_eq!(one["content-type"], "application/connect+proto");
    }
}
