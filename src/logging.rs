//! Log set-up through `tracing`: `LOG_LEVEL` (a level or a full filter) and `LOG_FORMAT`.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. A bad filter falls back to `info` with a warning.
pub fn init(level: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(level.to_ascii_lowercase()).unwrap_or_else(|_| {
        eprintln!("warning: LOG_LEVEL `{level}` is not a level or filter; using info");
        EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    if result.is_err() {
        // Already installed (tests, embedding): keep the existing one.
    }
}
