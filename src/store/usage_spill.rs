//! The usage spill file: where usage rows go when the gateway has to stop while the database is
//! down, and where the next start picks them up.
//!
//! One JSON object per line, appended (so several processes stopping in one working directory
//! add to the same file), mode 0600: rows name users, keys and accounts, though no secret. At
//! start-up the file is first renamed to a name of this process's own, so a process that spills
//! while another replays starts a new file instead of losing its lines; then every row is
//! inserted, and the renamed file is removed once all of them are stored. Rows are unique by
//! `(request_id, attempt)`, so a replay interrupted half-way and run again stores each row once.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use kiro_layers::store::{Store, UsageRow};

/// Rows per insert when replaying.
const REPLAY_BATCH: usize = 500;

/// Appends `rows` to the spill file at `path` (created if missing).
pub fn append(path: &Path, rows: &[UsageRow]) -> std::io::Result<()> {
    let mut text = String::new();
    for row in rows {
        let line = serde_json::to_string(row).map_err(std::io::Error::other)?;
        text.push_str(&line);
        text.push('\n');
    }
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    // One write for the whole batch: appends from two processes do not interleave inside it.
    options.open(path)?.write_all(text.as_bytes())
}

/// What a replay did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Rows read from the file.
    pub rows: u64,
    /// Of those, rows the database did not have yet.
    pub stored: u64,
    /// Lines that were not a usage row (kept in the log, then dropped with the file).
    pub unreadable: u64,
}

/// Stores the rows of the spill file at `path`, if there is one, and removes it. On an error
/// the lines go back into `path` for the next start.
pub async fn replay(store: &dyn Store, path: &Path) -> Result<Replayed, String> {
    let claimed = claimed_name(path);
    match std::fs::rename(path, &claimed) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Replayed::default())
        }
        Err(error) => return Err(format!("cannot claim {}: {error}", path.display())),
    }
    let result = replay_claimed(store, &claimed).await;
    if result.is_err() {
        give_back(&claimed, path);
    }
    result
}

/// Puts the lines of `claimed` back at the end of `path` (which another process may have
/// started meanwhile) and removes `claimed`.
fn give_back(claimed: &Path, path: &Path) {
    let moved = std::fs::read(claimed).and_then(|lines| {
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options.open(path)?.write_all(&lines)?;
        std::fs::remove_file(claimed)
    });
    if let Err(error) = moved {
        tracing::error!(
            "cannot put the spilled usage rows back into {} ({error}); they are in {}",
            path.display(),
            claimed.display()
        );
    }
}

async fn replay_claimed(store: &dyn Store, claimed: &Path) -> Result<Replayed, String> {
    let claimed = claimed.to_path_buf();
    let file = std::fs::File::open(&claimed)
        .map_err(|e| format!("cannot read {}: {e}", claimed.display()))?;
    let mut outcome = Replayed::default();
    let mut batch = Vec::with_capacity(REPLAY_BATCH);
    for (number, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| format!("cannot read {}: {e}", claimed.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<UsageRow>(&line) {
            Ok(row) => batch.push(row),
            Err(error) => {
                outcome.unreadable += 1;
                tracing::error!(
                    file = %claimed.display(),
                    line = number + 1,
                    "skipping a spilled usage line that is not a usage row: {error}"
                );
            }
        }
        if batch.len() == REPLAY_BATCH {
            store_batch(store, &mut batch, &mut outcome, &claimed).await?;
        }
    }
    store_batch(store, &mut batch, &mut outcome, &claimed).await?;
    std::fs::remove_file(&claimed).map_err(|e| {
        format!(
            "stored its rows but cannot remove {}: {e}",
            claimed.display()
        )
    })?;
    Ok(outcome)
}

async fn store_batch(
    store: &dyn Store,
    batch: &mut Vec<UsageRow>,
    outcome: &mut Replayed,
    file: &Path,
) -> Result<(), String> {
    if batch.is_empty() {
        return Ok(());
    }
    let stored = store.insert_usage(batch).await.map_err(|error| {
        format!(
            "cannot store spilled usage rows ({error}); they stay in {} for the next start",
            file.display()
        )
    })?;
    outcome.rows += batch.len() as u64;
    outcome.stored += stored;
    batch.clear();
    Ok(())
}

/// `<path>.replaying-<pid>`: the file this process replays from.
fn claimed_name(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".replaying-{}", std::process::id()));
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::crypto::Secret;
    use crate::store::usage_writer::usage_row;
    use kiro_layers::traits::{UsageRecord, UsageStatus};

    fn row(request_id: &str, status: UsageStatus) -> UsageRow {
        usage_row(
            UsageRecord {
                request_id: request_id.into(),
                attempt: 1,
                principal: Default::default(),
                requested_model: "claude-sonnet-4.5".into(),
                resolved_model: "claude-sonnet-4.5".into(),
                account_id: Some("a1".into()),
                input_tokens: 12,
                output_tokens: 34,
                cache_read_tokens: 0,
                cache_write_tokens: 0,
                credits: 0.25,
                status,
                time_to_first_token: Some(std::time::Duration::from_millis(120)),
                duration: std::time::Duration::from_millis(900),
                started_at: std::time::SystemTime::now(),
                account_kind: None,
                estimated: false,
            },
            250_000,
        )
    }

    /// Rows survive the file byte for byte, are stored once even when the file is replayed
    /// again, a line that is not a row is skipped and counted, and the file is gone afterwards.
    #[tokio::test]
    async fn spilled_rows_are_stored_once_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("usage-spill.jsonl");
        let db = dir.path().join("gateway.db");
        let store = crate::store::open(db.to_str().unwrap(), &Secret::from_bytes([7; 32]))
            .await
            .unwrap();
        let rows = vec![
            row("req_spill_1", UsageStatus::Ok),
            row("req_spill_2", UsageStatus::ClientAbort),
        ];
        append(&file, &rows[..1]).unwrap();
        append(&file, &rows[1..]).unwrap();
        for line in std::fs::read_to_string(&file).unwrap().lines() {
            let read: UsageRow = serde_json::from_str(line).unwrap();
            assert!(rows.contains(&read), "{line}");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .unwrap()
            .write_all(b"not a usage row\n")
            .unwrap();

        let replayed = replay(store.as_ref(), &file).await.unwrap();
        assert_eq!(
            replayed,
            Replayed {
                rows: 2,
                stored: 2,
                unreadable: 1
            }
        );
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("usage-spill"))
            .collect();
        assert!(left.is_empty(), "{left:?}");

        // The same rows spilled again (a replay cut short and run twice): stored once.
        append(&file, &rows).unwrap();
        let again = replay(store.as_ref(), &file).await.unwrap();
        assert_eq!((again.rows, again.stored), (2, 0));
        assert_eq!(
            replay(store.as_ref(), &file).await.unwrap(),
            Replayed::default()
        );
    }
}
