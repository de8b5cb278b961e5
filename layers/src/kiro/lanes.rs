//! The direct client's connections to Kiro: many answers share a few HTTP/2 connections.
//!
//! Over HTTP/1.1 every open answer holds its own connection to Kiro, so a process with 10,000
//! answers open needs 10,000 upstream descriptors besides the clients' 10,000. Over HTTP/2 one
//! connection carries many answers at once, up to the server's `SETTINGS_MAX_CONCURRENT_STREAMS`.
//! hyper-util's pooled client keeps exactly one HTTP/2 connection per host and queues requests
//! past that limit inside the connection, where a long answer holds its place for minutes: the
//! queued request would wait with no first byte. So the direct client is a set of hyper-util
//! clients ("lanes"), each carrying at most `streams_per_connection` answers in flight (from the
//! request until its body is dropped); a request takes the least busy lane, and a new lane (a
//! new connection) opens only when every lane is full. Lanes are kept: an idle lane's connection
//! closes after the pool's idle timeout and reopens on its next request.
//!
//! Flow control: each answer's receive window is [`STREAM_WINDOW`] and a connection's is
//! `streams_per_connection` times that, so an answer whose client reads slowly can hold back
//! its own stream only, never its siblings on the same connection.
//!
//! [`Http2Mode`] says how a connection is opened: by ALPN over TLS (real Kiro), with prior
//! knowledge over plain `http://` (h2c, the fakes), or never.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// The hyper-util client of one lane.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Receive window of one answer on an HTTP/2 connection. An answer arrives at model speed,
/// a few KiB a second; 256 KiB is far more than a round trip's worth.
pub const STREAM_WINDOW: u32 = 256 * 1024;

/// How the direct client speaks to Kiro (`KIRO_HTTP2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Http2Mode {
    /// HTTP/2 when TLS negotiates it by ALPN (real Kiro), else HTTP/1.1; plain `http://` URLs
    /// use HTTP/1.1.
    #[default]
    Auto,
    /// HTTP/2 only: by ALPN over TLS, with prior knowledge (h2c) over plain `http://`.
    Always,
    /// HTTP/1.1 only: one connection per open answer.
    Never,
}

impl FromStr for Http2Mode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Http2Mode::Auto),
            "always" | "true" | "on" | "h2c" => Ok(Http2Mode::Always),
            "never" | "false" | "off" => Ok(Http2Mode::Never),
            other => Err(format!(
                "`{other}` is not an HTTP/2 mode: use auto, always or never"
            )),
        }
    }
}

impl fmt::Display for Http2Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Http2Mode::Auto => "auto",
            Http2Mode::Always => "always",
            Http2Mode::Never => "never",
        })
    }
}

/// How the direct client connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectOptions {
    /// HTTP/2 or not.
    pub http2: Http2Mode,
    /// Answers one HTTP/2 connection carries at once before another opens. At most what the
    /// server allows (`SETTINGS_MAX_CONCURRENT_STREAMS`; 100 is the minimum RFC 9113
    /// recommends servers to allow).
    pub streams_per_connection: usize,
}

impl Default for DirectOptions {
    fn default() -> Self {
        DirectOptions {
            http2: Http2Mode::Auto,
            streams_per_connection: 100,
        }
    }
}

/// See the module docs.
pub struct Lanes {
    options: DirectOptions,
    lanes: Mutex<Vec<Arc<Lane>>>,
}

struct Lane {
    client: HttpClient,
    in_flight: AtomicUsize,
}

/// One answer's place in a lane; dropping it frees the place.
pub struct LaneTicket {
    lane: Arc<Lane>,
}

impl LaneTicket {
    /// The lane's client.
    pub fn client(&self) -> &HttpClient {
        &self.lane.client
    }
}

impl Drop for LaneTicket {
    fn drop(&mut self) {
        self.lane.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl fmt::Debug for Lanes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lanes")
            .field("options", &self.options)
            .field("lanes", &self.lane_count())
            .finish()
    }
}

impl Lanes {
    /// No connection yet; the first request opens the first lane.
    pub fn new(options: DirectOptions) -> Self {
        Lanes {
            options: DirectOptions {
                streams_per_connection: options.streams_per_connection.max(1),
                ..options
            },
            lanes: Mutex::new(Vec::new()),
        }
    }

    /// The options in force.
    pub fn options(&self) -> DirectOptions {
        self.options
    }

    /// Lanes opened so far (each holds at most one HTTP/2 connection).
    pub fn lane_count(&self) -> usize {
        self.lock().len()
    }

    /// A place in the least busy lane, or in a new lane when every lane is full. Over HTTP/1.1
    /// only (`never`) there is one lane: its pool opens a connection per answer anyway.
    pub fn take(&self) -> LaneTicket {
        let per_lane = match self.options.http2 {
            Http2Mode::Never => usize::MAX,
            Http2Mode::Auto | Http2Mode::Always => self.options.streams_per_connection,
        };
        let mut lanes = self.lock();
        let least_busy = lanes
            .iter()
            .min_by_key(|lane| lane.in_flight.load(Ordering::Acquire))
            .filter(|lane| lane.in_flight.load(Ordering::Acquire) < per_lane)
            .cloned();
        let lane = least_busy.unwrap_or_else(|| {
            let lane = Arc::new(Lane {
                client: build_client(self.options),
                in_flight: AtomicUsize::new(0),
            });
            lanes.push(Arc::clone(&lane));
            tracing::debug!(lanes = lanes.len(), "opened a lane to Kiro");
            lane
        });
        // Counted under the lock, so two requests cannot both take a lane's last place.
        lane.in_flight.fetch_add(1, Ordering::AcqRel);
        LaneTicket { lane }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Lane>>> {
        self.lanes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A pooled client: connections kept idle for 30 s, a 30 s connect timeout, `TCP_NODELAY`,
/// rustls with the web PKI roots.
fn build_client(options: DirectOptions) -> HttpClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(30)));
    let https = HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http();
    let https = match options.http2 {
        Http2Mode::Auto => https.enable_http1().enable_http2().wrap_connector(http),
        Http2Mode::Always => https.enable_http2().wrap_connector(http),
        Http2Mode::Never => https.enable_http1().wrap_connector(http),
    };
    let per_lane = u32::try_from(options.streams_per_connection).unwrap_or(u32::MAX);
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(256)
        .http2_initial_stream_window_size(STREAM_WINDOW)
        .http2_initial_connection_window_size(STREAM_WINDOW.saturating_mul(per_lane));
    if options.http2 == Http2Mode::Always {
        builder.http2_only(true);
    }
    builder.build(https)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lanes(http2: Http2Mode, per: usize) -> Lanes {
        Lanes::new(DirectOptions {
            http2,
            streams_per_connection: per,
        })
    }

    #[test]
    fn a_new_lane_opens_only_when_every_lane_is_full() {
        let lanes = lanes(Http2Mode::Always, 2);
        let a = lanes.take();
        let b = lanes.take();
        assert_eq!(lanes.lane_count(), 1);
        let c = lanes.take();
        assert_eq!(lanes.lane_count(), 2);
        // A place freed in the first lane is taken before any new lane opens.
        drop(a);
        let d = lanes.take();
        let e = lanes.take();
        assert_eq!(lanes.lane_count(), 2);
        assert!(Arc::ptr_eq(&d.lane, &b.lane) || Arc::ptr_eq(&e.lane, &b.lane));
        let f = lanes.take();
        assert_eq!(lanes.lane_count(), 3);
        drop((b, c, d, e, f));
    }

    #[test]
    fn requests_spread_over_the_least_busy_lane() {
        let lanes = lanes(Http2Mode::Auto, 3);
        let held: Vec<_> = (0..6).map(|_| lanes.take()).collect();
        assert_eq!(lanes.lane_count(), 2);
        drop(held);
        let lane = lanes.take();
        assert_eq!(lane.lane.in_flight.load(Ordering::Acquire), 1);
    }

    #[test]
    fn http1_only_keeps_one_lane() {
        let lanes = lanes(Http2Mode::Never, 1);
        let held: Vec<_> = (0..5).map(|_| lanes.take()).collect();
        assert_eq!(lanes.lane_count(), 1);
        drop(held);
    }

    #[test]
    fn modes_parse_and_print() {
        for (text, mode) in [
            ("auto", Http2Mode::Auto),
            ("ALWAYS", Http2Mode::Always),
            ("h2c", Http2Mode::Always),
            ("never", Http2Mode::Never),
            ("off", Http2Mode::Never),
        ] {
            assert_eq!(text.parse::<Http2Mode>(), Ok(mode));
        }
        assert_eq!(Http2Mode::Always.to_string(), "always");
        let error = "sometimes".parse::<Http2Mode>().unwrap_err();
        assert!(error.contains("auto, always or never"), "{error}");
    }
}
