//! Log set-up through `tracing`: `LOG_LEVEL` (a level or a full filter) and `LOG_FORMAT`.
//!
//! In JSON every line of a request carries its id: events are flattened to the top level and the
//! enclosing `request` span is under `"span"` (`{"span":{"name":"request","request_id":"…"}}`).

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber, writing to stdout. A bad filter falls back to `info` with a
/// warning.
pub fn init(level: &str, format: LogFormat) {
    init_with_writer(level, format, std::io::stdout);
}

/// [`init`] with another destination (tests read the JSON lines back).
pub fn init_with_writer<W>(level: &str, format: LogFormat, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(level.to_ascii_lowercase()).unwrap_or_else(|_| {
        eprintln!("warning: LOG_LEVEL `{level}` is not a level or filter; using info");
        EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(writer);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    if result.is_err() {
        // Already installed (tests, embedding): keep the existing one.
    }
}
