//! Holds N streamed chat requests open at once against a gateway and measures them: the load
//! client of `benches/streams.sh`.
//!
//! ```text
//! cargo run --release --example stream_load -- HOST PORT KEY N DELTAS MS
//! ```
//!
//! Each request asks the fake Kiro for a slow answer (`[fake:drip:DELTAS:MS]`: one text delta
//! every MS milliseconds) on its own HTTP/1.1 connection, as N separate clients would. It
//! prints `open <count>` once every stream has its first delta (or after DELTAS x MS), so the
//! driver can sample the gateway while all are open, then one JSON line: time to first delta
//! and the gap between consecutive deltas of a stream (p50/p99/max, milliseconds), streams
//! completed, errors, and this client's own CPU time, so a slow client shows instead of
//! passing for a slow gateway.
//!
//! Deltas are timed when their bytes are read: a read that holds two deltas counts a gap of 0
//! between them. The fake stamps each drip delta with the wall clock when it writes it, so the
//! "delay" of a delta (read time - stamp, same machine) is what the path added: the gateway,
//! loopback and this client's own lag, without the fake's timer slack that gaps include. Besides all gaps, the "steady" gaps are those between two deltas that both
//! arrived after every stream had started: while streams are still being opened, the gateway's
//! CPU goes to accepting them, and the open streams' gaps show that ramp, not the load of
//! holding them. The reading is plain tokio and hyper on two worker threads; at 10,000 streams
//! one delta a second that is 10,000 small reads a second, a few percent of a core.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Streams opened per ramp step, and the pause between steps (a burst of 10,000 connects at
/// once would overflow the listen backlog and measure SYN retries instead of the gateway).
const RAMP_BATCH: usize = 500;
const RAMP_PAUSE: Duration = Duration::from_millis(50);

struct Settings {
    host: String,
    port: u16,
    key: String,
    streams: usize,
    deltas: usize,
    every_ms: u64,
}

#[derive(Default)]
struct Timings {
    first_delta: Vec<Duration>,
    /// Each gap with the arrival of the delta that opened it.
    gaps: Vec<(Instant, Duration)>,
    /// Each delta's delay (read time - the fake's stamp) with its arrival.
    delays: Vec<(Instant, Duration)>,
    /// When the last stream got its first delta.
    all_started: Option<Instant>,
    completed: usize,
    errors: Vec<String>,
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [host, port, key, streams, deltas, every_ms] = args.as_slice() else {
        return Err("usage: stream_load HOST PORT KEY STREAMS DELTAS MS".to_owned());
    };
    let number = |text: &str| text.parse::<u64>().map_err(|e| format!("`{text}`: {e}"));
    let settings = Arc::new(Settings {
        host: host.clone(),
        port: u16::try_from(number(port)?).map_err(|e| e.to_string())?,
        key: key.clone(),
        streams: usize::try_from(number(streams)?).map_err(|e| e.to_string())?,
        deltas: usize::try_from(number(deltas)?).map_err(|e| e.to_string())?,
        every_ms: number(every_ms)?,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(run(settings));
    Ok(())
}

async fn run(settings: Arc<Settings>) {
    let timings = Arc::new(Mutex::new(Timings::default()));
    let started = Arc::new(AtomicUsize::new(0));
    let all_started = Arc::new(tokio::sync::Notify::new());
    let cpu_before = cpu_seconds();
    let wall = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..settings.streams {
        let (settings, timings) = (Arc::clone(&settings), Arc::clone(&timings));
        let (started, all_started) = (Arc::clone(&started), Arc::clone(&all_started));
        tasks.spawn(async move {
            let on_first = || {
                if started.fetch_add(1, Ordering::AcqRel) + 1 == settings.streams {
                    all_started.notify_one();
                }
            };
            if let Err(error) = one_stream(&settings, index, &timings, on_first).await {
                timings.lock().unwrap().errors.push(error);
            }
        });
        if (index + 1) % RAMP_BATCH == 0 {
            tokio::time::sleep(RAMP_PAUSE).await;
        }
    }
    let whole_answer = Duration::from_millis(settings.every_ms * settings.deltas as u64);
    let _ = tokio::time::timeout(whole_answer, all_started.notified()).await;
    timings.lock().unwrap().all_started = Some(Instant::now());
    println!("open {}", started.load(Ordering::Acquire));
    while tasks.join_next().await.is_some() {}
    let cpu = cpu_seconds() - cpu_before;
    let elapsed = wall.elapsed().as_secs_f64();
    let mut t = timings.lock().unwrap();
    let errors = t.errors.len();
    let all_started = t.all_started.unwrap_or(wall);
    let mut gaps: Vec<Duration> = t.gaps.iter().map(|(_, gap)| *gap).collect();
    let mut steady: Vec<Duration> = t
        .gaps
        .iter()
        .filter(|(from, _)| *from >= all_started)
        .map(|(_, gap)| *gap)
        .collect();
    let mut delays: Vec<Duration> = t.delays.iter().map(|(_, d)| *d).collect();
    let mut steady_delays: Vec<Duration> = t
        .delays
        .iter()
        .filter(|(at, _)| *at >= all_started)
        .map(|(_, d)| *d)
        .collect();
    let first_errors: Vec<String> = t.errors.iter().take(3).cloned().collect();
    let report = serde_json::json!({
        "streams": settings.streams,
        "completed": t.completed,
        "errors": errors,
        "first_errors": first_errors,
        "ttfb_p50_ms": percentile(&mut t.first_delta, 0.50),
        "ttfb_p99_ms": percentile(&mut t.first_delta, 0.99),
        "gap_p50_ms": percentile(&mut gaps, 0.50),
        "gap_p99_ms": percentile(&mut gaps, 0.99),
        "gap_max_ms": percentile(&mut gaps, 1.0),
        "steady_gap_p99_ms": percentile(&mut steady, 0.99),
        "steady_gap_max_ms": percentile(&mut steady, 1.0),
        "delay_p50_ms": percentile(&mut delays, 0.50),
        "delay_p99_ms": percentile(&mut delays, 0.99),
        "delay_max_ms": percentile(&mut delays, 1.0),
        "steady_delay_p50_ms": percentile(&mut steady_delays, 0.50),
        "steady_delay_p99_ms": percentile(&mut steady_delays, 0.99),
        "client_cpu_s": (cpu * 100.0).round() / 100.0,
        "client_cpu_pct": (cpu / elapsed * 1000.0).round() / 10.0,
    });
    println!("{report}");
}

/// One request on its own connection, read to the end.
async fn one_stream(
    settings: &Settings,
    index: usize,
    timings: &Mutex<Timings>,
    on_first: impl FnOnce(),
) -> Result<(), String> {
    let body = serde_json::json!({
        "model": "claude-sonnet-4.5",
        "stream": true,
        "messages": [{"role": "user", "content": format!(
            "[fake:drip:{}:{}] stream {index}", settings.deltas, settings.every_ms
        )}],
    })
    .to_string();
    let tcp = TcpStream::connect((settings.host.as_str(), settings.port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(connection);
    let request = http::Request::post("/v1/chat/completions")
        .header(http::header::HOST, &settings.host)
        .header(
            http::header::AUTHORIZATION,
            format!("Bearer {}", settings.key),
        )
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let sent = Instant::now();
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request: {e}"))?;
    if response.status() != http::StatusCode::OK {
        return Err(format!("status {}", response.status()));
    }
    let mut body = response.into_body();
    let mut on_first = Some(on_first);
    let (mut last, mut first_delta, mut gaps, mut delays, mut done) =
        (None::<Instant>, None, Vec::new(), Vec::new(), false);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("body: {e}"))?;
        let Some(chunk) = frame.data_ref() else {
            continue;
        };
        let now = Instant::now();
        let wall = unix_micros();
        delays.extend(
            stamps(chunk).map(|stamp| (now, Duration::from_micros(wall.saturating_sub(stamp)))),
        );
        for _ in 0..count(chunk, b"\"content\":\"") {
            match last {
                None => {
                    first_delta = Some(now - sent);
                    if let Some(on_first) = on_first.take() {
                        on_first();
                    }
                }
                Some(previous) => gaps.push((previous, now - previous)),
            }
            last = Some(now);
        }
        done |= count(chunk, b"data: [DONE]") > 0;
    }
    let mut t = timings.lock().unwrap();
    t.first_delta.extend(first_delta);
    t.gaps.extend(gaps);
    t.delays.extend(delays);
    if done {
        t.completed += 1;
        Ok(())
    } else {
        Err("the stream ended without [DONE]".to_owned())
    }
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|window| *window == needle)
        .count()
}

/// The fake's stamps in a chunk: `"content":"d<index>@<µs> "`.
fn stamps(chunk: &[u8]) -> impl Iterator<Item = u64> + '_ {
    let needle = b"\"content\":\"d";
    let mut rest = chunk;
    std::iter::from_fn(move || loop {
        let start = rest.windows(needle.len()).position(|w| w == needle)? + needle.len();
        rest = &rest[start..];
        let at = rest.iter().take(12).position(|&b| b == b'@')?;
        let digits: Vec<u8> = rest[at + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .copied()
            .collect();
        if let Some(stamp) = std::str::from_utf8(&digits)
            .ok()
            .and_then(|d| d.parse().ok())
        {
            return Some(stamp);
        }
    })
}

fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn percentile(values: &mut [Duration], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let index = ((values.len() as f64 * p) as usize).min(values.len() - 1);
    Some((values[index].as_secs_f64() * 10_000.0).round() / 10.0)
}

/// This process's user + system CPU time (Linux `/proc`; 0 elsewhere).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // /proc reports in USER_HZ, which Linux fixes at 100.
    (ticks(11) + ticks(12)) / 100.0
}
