//! What each stage leaves behind: `STAGE/stage.json` with a stamp of its inputs, the provenance,
//! the wall time, its files and a summary the report reads. A rerun whose stamp matches and
//! whose files are all there reuses the stage.
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// The file each stage writes last.
pub const FILE: &str = "stage.json";

/// Who ran a study: the tool's version and commit.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Provenance {
    /// `daed X.Y.Z`.
    pub tool: String,
    /// The git commit the binary was built from (`unknown` when not built from a checkout).
    pub commit: String,
}

/// The record of one finished stage.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StageRecord {
    /// The stage's name (its folder).
    pub stage: String,
    /// SHA-256 of the inputs and the upstream stamps.
    pub stamp: String,
    /// What the stage depended on (its part of the plan, the models it read).
    pub inputs: Value,
    /// The tool and commit that ran it.
    pub provenance: Provenance,
    /// When it started (UTC, RFC 3339).
    pub started: String,
    /// Seconds it ran.
    pub wall_s: f64,
    /// Its files, relative to its folder.
    pub files: Vec<String>,
    /// Its figures and tables in a form the report reads.
    pub summary: Value,
    /// Notes (datasets left out, conversions made).
    pub notes: Vec<String>,
    /// Why it did nothing, when it did nothing.
    pub skipped: Option<String>,
}

impl StageRecord {
    /// Reads `dir/stage.json`, if there.
    pub fn read(dir: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(dir.join(FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Writes `dir/stage.json` atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        daed_io::table::write_json(dir.join(FILE), self).map_err(Error::from)
    }

    /// True when the record was made from these inputs and all its files are still there.
    pub fn reusable(&self, stamp: &str, dir: &Path) -> bool {
        self.stamp == stamp && self.files.iter().all(|f| dir.join(f).exists())
    }
}

/// The stamp of a stage: SHA-256 over its name, its inputs and the stamps it builds on.
pub fn stamp(stage: &str, inputs: &Value, upstream: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(stage.as_bytes());
    h.update([0]);
    h.update(inputs.to_string().as_bytes());
    for u in upstream {
        h.update([0]);
        h.update(u.as_bytes());
    }
    hex(&h.finalize())
}

/// SHA-256 of a file's bytes, in hex.
pub fn file_sha256(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(hex(&Sha256::digest(&bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The current time as RFC 3339 UTC (`2026-11-29T19:58:00Z`).
pub fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Year, month, day of a count of days since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_match_known_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(20_786), (2026, 11, 29));
    }

    #[test]
    fn stamps_change_with_inputs_and_upstream() {
        let a = stamp("recon", &serde_json::json!({"n": 1}), &["x"]);
        assert_ne!(a, stamp("recon", &serde_json::json!({"n": 2}), &["x"]));
        assert_ne!(a, stamp("recon", &serde_json::json!({"n": 1}), &["y"]));
        assert_eq!(a, stamp("recon", &serde_json::json!({"n": 1}), &["x"]));
    }
}
