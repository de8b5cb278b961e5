//! [`DebugWriter`]: the capture sink. Filters by mode on the request path (a few comparisons),
//! queues on a bounded channel (a full queue drops the capture and counts it, never waits), and
//! a background thread renders, redacts, writes and prunes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kiro_layers::capture::{CaptureRecord, CaptureSink};
use tokio::sync::mpsc;

use super::mode::DebugMode;
use super::render::render;

/// Captures waiting to be written before new ones are dropped.
const QUEUE: usize = 256;

/// Where and how much to capture.
#[derive(Debug, Clone)]
pub struct DebugSettings {
    /// Which requests.
    pub mode: DebugMode,
    /// Directory of the capture files.
    pub dir: PathBuf,
    /// Total size the directory may reach; oldest files go first.
    pub max_bytes: u64,
    /// Age after which a file is deleted.
    pub max_age: Duration,
    /// Values scrubbed from every capture besides those seen per request (the gateway's key,
    /// configured refresh tokens).
    pub secrets: Vec<String>,
}

/// The capture sink given to the stack.
pub struct DebugWriter {
    mode: DebugMode,
    queue: mpsc::Sender<CaptureRecord>,
    counts: Arc<Counts>,
}

/// What the writer has done so far.
#[derive(Debug, Default)]
struct Counts {
    seen: AtomicU64,
    kept: AtomicU64,
    written: AtomicU64,
    dropped: AtomicU64,
}

impl DebugWriter {
    /// Starts the writer thread; `None` when the mode is `off`. Creates the directory.
    pub fn start(settings: DebugSettings) -> Result<Option<Arc<Self>>, String> {
        if settings.mode == DebugMode::Off {
            return Ok(None);
        }
        std::fs::create_dir_all(&settings.dir).map_err(|e| {
            format!(
                "DEBUG_DIR `{}` cannot be created: {e}",
                settings.dir.display()
            )
        })?;
        let (queue, mut receiver) = mpsc::channel::<CaptureRecord>(QUEUE);
        let mode = settings.mode.clone();
        let counts = Arc::new(Counts::default());
        let written = Arc::clone(&counts);
        std::thread::Builder::new()
            .name("debug-capture".into())
            .spawn(move || {
                while let Some(record) = receiver.blocking_recv() {
                    if let Err(error) = write_capture(&settings, &record) {
                        tracing::warn!("debug capture not written: {error}");
                    }
                    prune(&settings.dir, settings.max_bytes, settings.max_age);
                    written.written.fetch_add(1, Ordering::Release);
                }
            })
            .map_err(|e| format!("could not start the debug capture writer: {e}"))?;
        tracing::warn!(
            "DEBUG_MODE={mode}: request captures are written (redacted) to the debug directory"
        );
        Ok(Some(Arc::new(DebugWriter {
            mode,
            queue,
            counts,
        })))
    }

    /// Finished requests offered to the writer.
    pub fn seen(&self) -> u64 {
        self.counts.seen.load(Ordering::Acquire)
    }

    /// Captures the mode kept.
    pub fn kept(&self) -> u64 {
        self.counts.kept.load(Ordering::Acquire)
    }

    /// Captures written (or that failed to write) by the background thread.
    pub fn written(&self) -> u64 {
        self.counts.written.load(Ordering::Acquire)
    }

    /// Captures dropped because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.counts.dropped.load(Ordering::Relaxed)
    }
}

impl CaptureSink for DebugWriter {
    fn submit(&self, record: CaptureRecord) {
        let keep = self.mode.keeps(&record);
        if keep {
            self.counts.kept.fetch_add(1, Ordering::Release);
        }
        self.counts.seen.fetch_add(1, Ordering::Release);
        if !keep {
            return;
        }
        if self.queue.try_send(record).is_err() {
            // Counted as written too, so `written == kept` still means "nothing pending".
            self.counts.written.fetch_add(1, Ordering::Release);
            let dropped = self.counts.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(dropped, "debug capture queue full; captures dropped");
            }
        }
    }
}

/// `<UTC time>_<request id>`: sorts by age, names the request.
fn file_stem(record: &CaptureRecord) -> String {
    let started = record.started_at.unwrap_or_else(SystemTime::now);
    let time = chrono::DateTime::<chrono::Utc>::from(started).format("%Y%m%dT%H%M%S%.6fZ");
    let id: String = record
        .request_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .take(64)
        .collect();
    format!("{time}_{id}")
}

fn write_capture(settings: &DebugSettings, record: &CaptureRecord) -> std::io::Result<()> {
    let text = render(record, &settings.secrets);
    let stem = file_stem(record);
    // Written under a temporary name and renamed, so a reader never sees half a file.
    let partial = settings.dir.join(format!(".{stem}.partial"));
    std::fs::write(&partial, text)?;
    std::fs::rename(&partial, settings.dir.join(format!("{stem}.jsonl")))
}

/// Deletes files older than `max_age`, then the oldest until the total fits `max_bytes`.
pub fn prune(dir: &Path, max_bytes: u64, max_age: Duration) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let now = SystemTime::now();
    let mut files: Vec<(String, u64, PathBuf)> = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".jsonl") {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        let old = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age > max_age);
        if old {
            let _ = std::fs::remove_file(entry.path());
        } else {
            files.push((name, meta.len(), entry.path()));
        }
    }
    files.sort();
    let mut total: u64 = files.iter().map(|f| f.1).sum();
    for (_, size, path) in files {
        if total <= max_bytes {
            break;
        }
        if std::fs::remove_file(&path).is_ok() {
            total = total.saturating_sub(size);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_drops_oldest_first() {
        let dir = std::env::temp_dir().join(format!("kiro-prune-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in [
            "20250101T000000Z_a",
            "20250102T000000Z_b",
            "20250103T000000Z_c",
        ] {
            std::fs::write(dir.join(format!("{name}.jsonl")), vec![b'x'; 100]).unwrap();
        }
        prune(&dir, 250, Duration::from_secs(3600));
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            vec!["20250102T000000Z_b.jsonl", "20250103T000000Z_c.jsonl"]
        );
        prune(&dir, 1000, Duration::ZERO);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
