//! Reading captures back: `kiro-gateway debug list` and `debug show <id>`.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// One capture, as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptureSummary {
    /// File stem; what `debug show` takes.
    pub id: String,
    /// The `request` line of the file.
    pub request: Value,
    /// File size in bytes.
    pub bytes: u64,
}

/// The captures in `dir`, newest first.
pub fn list(dir: &Path) -> Result<Vec<CaptureSummary>, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read DEBUG_DIR `{}`: {e}", dir.display()))?;
    let mut captures = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_suffix(".jsonl") else {
            continue;
        };
        let bytes = entry.metadata().map_or(0, |m| m.len());
        let request = std::fs::read_to_string(entry.path())
            .ok()
            .and_then(|text| text.lines().next().map(str::to_owned))
            .and_then(|line| serde_json::from_str(&line).ok())
            .unwrap_or(Value::Null);
        captures.push(CaptureSummary {
            id: id.to_owned(),
            request,
            bytes,
        });
    }
    captures.sort_by(|a, b| b.id.cmp(&a.id));
    Ok(captures)
}

/// The path of capture `id` (a file stem, or a request id that ends one).
pub fn find(dir: &Path, id: &str) -> Result<PathBuf, String> {
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        || id.contains("..")
    {
        return Err(format!("`{id}` is not a capture id"));
    }
    let exact = dir.join(format!("{id}.jsonl"));
    if exact.is_file() {
        return Ok(exact);
    }
    list(dir)?
        .into_iter()
        .find(|c| c.id.ends_with(&format!("_{id}")))
        .map(|c| dir.join(format!("{}.jsonl", c.id)))
        .ok_or_else(|| format!("no capture `{id}` in `{}`", dir.display()))
}

/// One line per capture for the terminal.
pub fn format_list(captures: &[CaptureSummary]) -> String {
    let mut out = String::new();
    for c in captures {
        let r = &c.request;
        out.push_str(&format!(
            "{}  {} {} status={} failed={} user={} {} bytes\n",
            c.id,
            r["method"].as_str().unwrap_or("?"),
            r["path"].as_str().unwrap_or("?"),
            r["status"],
            r["failed"],
            r["user_id"]
                .as_str()
                .or(r["key_id"].as_str())
                .unwrap_or("-"),
            c.bytes
        ));
    }
    out
}
