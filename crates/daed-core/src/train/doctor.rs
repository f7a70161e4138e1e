//! `daed doctor`: checks a run directory and says what is wrong and how to repair it.
//!
//! Checks: every checkpoint's `state.json` and tensor checksums, non-finite weights, where
//! `checkpoints/latest` points, temporary files left by killed writes, and the log's steps. It
//! changes nothing unless [`repair`] is called, and then only what it can redo safely: it removes
//! leftovers of killed writes, points `latest` at the newest sound checkpoint and drops log lines
//! that a resumed run wrote again. A damaged checkpoint is reported, never deleted.
use std::path::{Path, PathBuf};

use super::checkpoint::{self, first_non_finite, Checkpoint, TensorFile};
use super::trainer::{jsonl_step, run_temp_dirs};
use crate::{Error, Result};

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Worth knowing; nothing to do.
    Info,
    /// Something to repair.
    Problem,
}

/// What a repair would do about a finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Repair {
    /// Nothing automatic: the message says what the user can do.
    None,
    /// Remove these leftovers of killed writes (daed's own temporary files).
    RemoveTemps(Vec<PathBuf>),
    /// Point `checkpoints/latest` at this checkpoint.
    PointLatest(String),
    /// Keep only the log lines of the trajectory that was resumed last.
    RewindLog(PathBuf),
}

/// One thing the doctor found.
#[derive(Clone, Debug)]
pub struct Finding {
    /// How bad.
    pub severity: Severity,
    /// What was found, and how to deal with it.
    pub message: String,
    /// What `--repair` does about it.
    pub repair: Repair,
}

/// Everything found in one run directory.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Complete, sound checkpoints, oldest first.
    pub sound: Vec<PathBuf>,
    /// The findings, in the order checked.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Whether anything needs repair.
    pub fn healthy(&self) -> bool {
        self.findings.iter().all(|f| f.severity == Severity::Info)
    }

    fn info(&mut self, message: String) {
        self.push(Severity::Info, message, Repair::None);
    }

    fn push(&mut self, severity: Severity, message: String, repair: Repair) {
        self.findings.push(Finding {
            severity,
            message,
            repair,
        });
    }
}

/// Checks one checkpoint: its state, every tensor file's checksum, finite weights.
fn check_checkpoint(dir: &Path) -> std::result::Result<(), String> {
    let ck = Checkpoint::open(dir).map_err(|e| e.to_string())?;
    for file in TensorFile::ALL {
        let arrays = ck.tensors(file).map_err(|e| e.to_string())?;
        if let Some((name, i)) = first_non_finite(&arrays) {
            return Err(format!("{}: `{name}`[{i}] is not finite", file.name()));
        }
    }
    if checkpoint::step_of(dir) != Some(ck.state.step) {
        return Err(format!(
            "its state.json says step {}, its name another",
            ck.state.step
        ));
    }
    Ok(())
}

/// The `step` of each parseable line of a JSONL log, and the number of lines that do not parse.
fn log_steps(text: &str) -> (Vec<u64>, usize) {
    let steps: Vec<u64> = text.lines().filter_map(|l| jsonl_step(l, "step")).collect();
    let bad = text.lines().count() - steps.len();
    (steps, bad)
}

fn check_log(run_dir: &Path, newest: Option<u64>, r: &mut Report) {
    let path = run_dir.join("log.jsonl");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return;
    };
    let (steps, bad) = log_steps(&text);
    let repeated = steps.windows(2).filter(|w| w[1] <= w[0]).count();
    if repeated > 0 || bad > 0 {
        r.push(
            Severity::Problem,
            format!(
                "{}: {repeated} line(s) repeat or go back in steps, {bad} line(s) do not parse \
                 (a resume before this fix, or a cut write); --repair keeps the lines of the last \
                 trajectory",
                path.display()
            ),
            Repair::RewindLog(path.clone()),
        );
    }
    if let (Some(&last), Some(ck)) = (steps.last(), newest) {
        if last > ck {
            r.info(format!(
                "{}: logged to step {last}, past the newest checkpoint (step {ck}); a resume \
                 redoes those steps and replaces their lines",
                path.display()
            ));
        }
    }
}

fn check_latest(root: &Path, sound: &[PathBuf], r: &mut Report) {
    let newest = sound
        .last()
        .and_then(|p| Some(p.file_name()?.to_string_lossy().into_owned()));
    let latest = std::fs::read_to_string(root.join("latest"))
        .ok()
        .map(|s| s.trim().to_string());
    match (&latest, &newest) {
        (Some(l), Some(n)) if l == n => {}
        (None, None) => {}
        (_, Some(n)) => r.push(
            Severity::Problem,
            format!(
                "checkpoints/latest names {}, the newest sound checkpoint is {n}; --repair points \
                 it there",
                latest.as_deref().unwrap_or("nothing (missing)")
            ),
            Repair::PointLatest(n.clone()),
        ),
        (Some(l), None) => r.push(
            Severity::Problem,
            format!(
                "checkpoints/latest names {l}, but no checkpoint is sound: retrain, or restore a \
                 checkpoint from a backup"
            ),
            Repair::None,
        ),
    }
}

/// Checks `run_dir` without changing anything.
pub fn inspect(run_dir: &Path) -> Result<Report> {
    if !run_dir.is_dir() {
        return Err(Error::ckpt(run_dir, "not a directory"));
    }
    let root = run_dir.join("checkpoints");
    let mut r = Report::default();
    if !root.is_dir() {
        r.push(
            Severity::Problem,
            format!(
                "{} has no checkpoints/ folder: not a daed run, or it never reached its first \
                 checkpoint",
                run_dir.display()
            ),
            Repair::None,
        );
        return Ok(r);
    }
    for dir in checkpoint::list(run_dir)? {
        match check_checkpoint(&dir) {
            Ok(()) => r.sound.push(dir),
            Err(e) => r.push(
                Severity::Problem,
                format!(
                    "{} is damaged: {e}; move it out of checkpoints/ (the doctor never deletes a \
                     checkpoint)",
                    dir.display()
                ),
                Repair::None,
            ),
        }
    }
    r.info(format!("{} sound checkpoint(s)", r.sound.len()));
    let stale: Vec<PathBuf> = run_temp_dirs(run_dir)
        .iter()
        .flat_map(|d| daed_io::atomic::stale_temps(d))
        .collect();
    if !stale.is_empty() {
        let bytes: u64 = stale.iter().map(|p| daed_io::atomic::disk_usage(p)).sum();
        r.push(
            Severity::Problem,
            format!(
                "{} leftover(s) of killed writes in {} ({bytes} bytes); --repair removes them",
                stale.len(),
                run_dir.display()
            ),
            Repair::RemoveTemps(stale),
        );
    }
    let sound = r.sound.clone();
    check_latest(&root, &sound, &mut r);
    let newest = sound.last().and_then(|p| checkpoint::step_of(p));
    check_log(run_dir, newest, &mut r);
    Ok(r)
}

/// Keeps the lines of the last trajectory: a line whose step is not past the previous one starts
/// it again (what a resume wrote) and replaces the lines from that step on; unparseable lines go.
fn rewind_log(path: &Path) -> Result<()> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut kept: Vec<(u64, &str)> = Vec::new();
    for line in text.lines() {
        let Some(step) = jsonl_step(line, "step") else {
            continue;
        };
        kept.retain(|(s, _)| *s < step);
        kept.push((step, line));
    }
    let out: String = kept.iter().map(|(_, l)| format!("{l}\n")).collect();
    daed_io::atomic::write_atomic(path, out.as_bytes())?;
    Ok(())
}

/// Carries out the repairs of `report` in `run_dir`; returns what was done, one line each.
/// Refused while a training process holds the run's lock.
pub fn repair(run_dir: &Path, report: &Report) -> Result<Vec<String>> {
    let _lock = super::trainer::RunLock::acquire(run_dir)?;
    let mut done = Vec::new();
    for f in &report.findings {
        match &f.repair {
            Repair::None => {}
            Repair::RemoveTemps(paths) => {
                let mut freed = 0;
                for dir in run_temp_dirs(run_dir) {
                    freed += daed_io::atomic::remove_stale_temps(&dir)?;
                }
                done.push(format!(
                    "removed {} leftover(s), {freed} bytes",
                    paths.len()
                ));
            }
            Repair::PointLatest(name) => {
                let latest = run_dir.join("checkpoints").join("latest");
                daed_io::atomic::write_atomic(&latest, name.as_bytes())?;
                done.push(format!("checkpoints/latest -> {name}"));
            }
            Repair::RewindLog(path) => {
                rewind_log(path)?;
                done.push(format!("rewrote {}", path.display()));
            }
        }
    }
    Ok(done)
}
