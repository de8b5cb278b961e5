//! `DEBUG_MODE`: which requests are captured.

use std::fmt;
use std::str::FromStr;

use kiro_layers::capture::CaptureRecord;

/// Which requests are captured.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DebugMode {
    /// Nothing (the default): no capture hooks at all.
    #[default]
    Off,
    /// Only failed requests (error status, or an error mid-stream).
    Errors,
    /// Every request.
    All,
    /// Only the requests of this user id or API key id.
    Trace(String),
}

impl DebugMode {
    /// Whether `record` is kept.
    pub fn keeps(&self, record: &CaptureRecord) -> bool {
        match self {
            DebugMode::Off => false,
            DebugMode::Errors => record.failed(),
            DebugMode::All => true,
            DebugMode::Trace(who) => record
                .principal
                .as_ref()
                .is_some_and(|p| p.user_id.as_deref() == Some(who.as_str()) || p.key_id == *who),
        }
    }
}

impl FromStr for DebugMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        match text.to_ascii_lowercase().as_str() {
            "" | "off" | "false" | "0" | "none" => return Ok(DebugMode::Off),
            "errors" => return Ok(DebugMode::Errors),
            "all" => return Ok(DebugMode::All),
            _ => {}
        }
        match text.split_once(':') {
            Some((kind, who)) if kind.eq_ignore_ascii_case("trace") && !who.trim().is_empty() => {
                Ok(DebugMode::Trace(who.trim().to_owned()))
            }
            _ => Err(format!(
                "DEBUG_MODE `{text}` is not one of off, errors, all, trace:<user id or key id>"
            )),
        }
    }
}

impl fmt::Display for DebugMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DebugMode::Off => f.write_str("off"),
            DebugMode::Errors => f.write_str("errors"),
            DebugMode::All => f.write_str("all"),
            DebugMode::Trace(who) => write!(f, "trace:{who}"),
        }
    }
}

/// Parses `DEBUG_MAX_AGE`: seconds, or a number with `s`, `m`, `h` or `d`.
pub fn parse_age(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().last() {
        Some((at, c)) if c.is_ascii_alphabetic() => (&text[..at], c.to_ascii_lowercase()),
        _ => (text, 's'),
    };
    let seconds_per_unit = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => {
            return Err(format!(
                "DEBUG_MAX_AGE `{text}`: use a number with s, m, h or d"
            ))
        }
    };
    let number: u64 = number
        .trim()
        .parse()
        .map_err(|_| format!("DEBUG_MAX_AGE `{text}`: use a number with s, m, h or d"))?;
    Ok(std::time::Duration::from_secs(
        number.saturating_mul(seconds_per_unit),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiro_layers::traits::Principal;

    #[test]
    fn parses_every_mode() {
        assert_eq!("off".parse(), Ok(DebugMode::Off));
        assert_eq!("ERRORS".parse(), Ok(DebugMode::Errors));
        assert_eq!("all".parse(), Ok(DebugMode::All));
        assert_eq!("trace:alice".parse(), Ok(DebugMode::Trace("alice".into())));
        assert!("trace:".parse::<DebugMode>().is_err());
        assert!("sometimes".parse::<DebugMode>().is_err());
    }

    #[test]
    fn trace_keeps_only_that_user() {
        let mut record = CaptureRecord::default();
        let mode = DebugMode::Trace("alice".into());
        assert!(!mode.keeps(&record), "unauthenticated is nobody's");
        record.principal = Some(Principal {
            key_id: "k1".into(),
            user_id: Some("alice".into()),
            ..Principal::default()
        });
        assert!(mode.keeps(&record));
        assert!(DebugMode::Trace("k1".into()).keeps(&record));
        assert!(!DebugMode::Trace("bob".into()).keeps(&record));
    }

    #[test]
    fn ages() {
        assert_eq!(parse_age("90").unwrap().as_secs(), 90);
        assert_eq!(parse_age("2h").unwrap().as_secs(), 7200);
        assert_eq!(parse_age("7d").unwrap().as_secs(), 604_800);
        assert!(parse_age("soon").is_err());
    }
}
