//! Training dynamics (paper Figure 13): the VLB term at log-spaced diffusion steps, recorded on a
//! fixed batch during training (`train.dynamics_every`) into `dynamics.jsonl`, read back and
//! written as a table and a plot. The trainer writes records with [`append`]; `daed analyze
//! dynamics` reads them with [`read`].
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use daed_io::plot::{Figure, Panel, Series};
use daed_io::table::Table;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The file a run's records go to.
pub const FILE: &str = "dynamics.jsonl";

/// One probe: the VLB term (bits/dim) at diffusion steps `t` after `train_step` steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Diffusion steps probed (1-based).
    pub t: Vec<usize>,
    /// Optimiser steps done.
    pub train_step: u64,
    /// The VLB term at each of `t`, bits/dim (a non-finite value is written as `null` and read
    /// back as NaN).
    #[serde(deserialize_with = "nan_for_null")]
    pub vlb_bpd: Vec<f64>,
}

fn nan_for_null<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Vec<f64>, D::Error> {
    let v: Vec<Option<f64>> = Deserialize::deserialize(d)?;
    Ok(v.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect())
}

/// Appends `record` to `run_dir/dynamics.jsonl` (one JSON line).
pub fn append(run_dir: &Path, record: &Record) -> Result<()> {
    let path = run_dir.join(FILE);
    let line = serde_json::to_string(record).expect("a record serialises");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    writeln!(f, "{line}").map_err(|e| Error::io(&path, e))
}

/// Reads the records of `run_dir`; errors name the file and line.
pub fn read(run_dir: &Path) -> Result<Vec<Record>> {
    let path = run_dir.join(FILE);
    let text = std::fs::read_to_string(&path).map_err(|_| {
        Error::ckpt(
            &path,
            "no dynamics recorded (train with train.dynamics_every > 0)",
        )
    })?;
    let mut records = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let r: Record = serde_json::from_str(line)
            .map_err(|e| Error::ckpt(&path, format!("line {}: {e}", i + 1)))?;
        if r.t.len() != r.vlb_bpd.len() {
            return Err(Error::ckpt(
                &path,
                format!("line {}: t and vlb_bpd differ in length", i + 1),
            ));
        }
        records.push(r);
    }
    if records.is_empty() {
        return Err(Error::ckpt(&path, "empty"));
    }
    Ok(records)
}

/// The long table: one row per (training step, diffusion step).
pub fn table(records: &[Record]) -> Table {
    let mut table = Table::new(["train_step", "t", "vlb_bpd"]);
    for r in records {
        for (t, v) in r.t.iter().zip(&r.vlb_bpd) {
            table.push([r.train_step.to_string(), t.to_string(), format!("{v:.6e}")]);
        }
    }
    table
}

/// The curves of at most 8 diffusion steps (evenly picked) over training, log scale.
pub fn figure(records: &[Record]) -> Figure {
    let mut series: BTreeMap<usize, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for r in records {
        for (&t, &v) in r.t.iter().zip(&r.vlb_bpd) {
            let e = series.entry(t).or_default();
            e.0.push(r.train_step as f64);
            e.1.push(v.max(1e-8));
        }
    }
    let keys: Vec<usize> = series.keys().copied().collect();
    let pick: Vec<usize> = if keys.len() <= 8 {
        keys.clone()
    } else {
        (0..8).map(|i| keys[i * (keys.len() - 1) / 7]).collect()
    };
    let lines = pick
        .iter()
        .map(|t| Series {
            name: format!("t={t}"),
            xs: series[t].0.clone(),
            ys: series[t].1.clone(),
            band: None,
        })
        .collect();
    Figure {
        panels: vec![Panel {
            title: "VLB term per diffusion step over training".into(),
            x_label: "training step".into(),
            y_label: "bits/dim".into(),
            series: lines,
            log_y: true,
            hlines: vec![],
        }],
        width: 900,
        height: 500,
    }
}

/// Writes `dynamics.csv` and `dynamics.png` of `records` into `out`; returns their paths.
pub fn write(out: &Path, records: &[Record]) -> Result<[PathBuf; 2]> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let paths = [out.join("dynamics.csv"), out.join("dynamics.png")];
    table(records).write_csv(&paths[0])?;
    figure(records).save_png(&paths[1])?;
    Ok(paths)
}
