//! `STUDY/report.html` (self-contained), `report.md` and `results.json`: every stage's figures
//! and tables laid out like the paper, the paper's numbers beside daed's (labelled), the
//! provenance, and a reading of where the findings agree with the paper and where they do not.
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::doc::{Block, Doc};
use super::paper;
use super::{StageRecord, StudyOptions, StudyPlan};
use crate::{Error, Result};

/// The records by name, and the study folder.
struct View<'a> {
    out: &'a Path,
    records: &'a [StageRecord],
    dataset: String,
}

impl View<'_> {
    fn get(&self, name: &str) -> Option<&StageRecord> {
        self.records.iter().find(|r| r.stage == name)
    }
    fn summary(&self, name: &str) -> &Value {
        static NULL: Value = Value::Null;
        self.get(name).map_or(&NULL, |r| &r.summary)
    }
    /// An image block for `stage/file` when the stage wrote it.
    fn image(&self, stage: &str, file: &str, caption: String) -> Option<Block> {
        let rel = PathBuf::from(stage).join(file);
        let exists = self.out.join(&rel).exists();
        exists.then_some(Block::Image(rel, caption))
    }
    /// A paragraph saying why a stage did nothing, when it did nothing.
    fn skipped(&self, stage: &str) -> Option<Block> {
        let r = self.get(stage)?;
        r.skipped
            .as_ref()
            .map(|why| Block::Para(format!("Not run: {why}.")))
    }
}

/// How the report names a dataset.
fn display_name(dataset: &str) -> String {
    match super::plan::canonical_name(dataset).as_str() {
        "fashion-mnist-demo" => "Fashion-MNIST (the 2,000 test images embedded in daed)".into(),
        "fashion-mnist" => "Fashion-MNIST".into(),
        other => other.to_string(),
    }
}

fn f(v: &Value, digits: usize) -> String {
    v.as_f64()
        .map_or("-".to_string(), |x| format!("{x:.digits$}"))
}

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

/// Writes the report; returns the paths of `report.html` and `report.md`.
pub fn write(
    out: &Path,
    plan: &StudyPlan,
    opts: &StudyOptions,
    records: &[StageRecord],
    notes: &[String],
) -> Result<[PathBuf; 2]> {
    let v = View {
        out,
        records,
        dataset: records
            .iter()
            .find(|r| r.stage == "ddgm")
            .and_then(|r| r.summary["dataset"].as_str())
            .unwrap_or(&plan.ddgm.data.dataset)
            .to_string(),
    };
    let mut blocks = intro(&v, plan);
    blocks.extend(snr(&v));
    blocks.extend(ddgm(&v));
    blocks.extend(recon(&v));
    blocks.extend(losses(&v));
    blocks.extend(daeds(&v));
    blocks.extend(sweep(&v));
    blocks.extend(transfer(&v));
    blocks.extend(suggestion(&v));
    blocks.push(Block::Heading("Reading: agreement with the paper".into()));
    blocks.push(Block::List(reading(&v)));
    blocks.extend(provenance(&v, plan, opts, notes));
    let doc = Doc {
        title: format!(
            "DDGM study: {} ({} scale)",
            display_name(&v.dataset),
            plan.scale
        ),
        blocks,
    };
    let paths = [out.join("report.html"), out.join("report.md")];
    daed_io::atomic::write_atomic(&paths[0], doc.to_html(out)?.as_bytes())?;
    daed_io::atomic::write_atomic(&paths[1], doc.to_markdown().as_bytes())?;
    daed_io::atomic::write_atomic(out.join("plan.toml"), plan.to_toml().as_bytes())?;
    daed_io::table::write_json(out.join("results.json"), &records).map_err(Error::from)?;
    Ok(paths)
}

fn intro(v: &View, plan: &StudyPlan) -> Vec<Block> {
    let s = v.summary("ddgm");
    vec![Block::Para(format!(
        "A reproduction of the analyses of Deja et al. (NeurIPS 2022) on {}: a DDGM with {} parameters \
         (T = {}, {} schedule, trained {} steps), DAEs for beta1 in {:?} ({} mode, {} steps each). \
         Numbers labelled \"paper\" are the paper's own; all others were measured by this run.{}",
        display_name(&v.dataset),
        s["parameters"],
        s["steps_T"],
        s["schedule"].as_str().unwrap_or("-"),
        s["step"],
        plan.beta1,
        serde_json::to_value(plan.dae.mode).unwrap_or_default().as_str().unwrap_or("-"),
        plan.dae.steps,
        match plan.scale.as_str() {
            "micro" | "cpu" => format!(
                " The {} scale uses small models and {} samples per model: compare rankings and \
                 trends with the paper, not absolute values (FID on few samples is biased upwards).",
                plan.scale, plan.metrics.n
            ),
            _ => String::new(),
        },
    ))]
}

fn snr(v: &View) -> Vec<Block> {
    let mut b = vec![Block::Heading(
        "Figures 1 and 7: signal-to-noise ratio per step".into(),
    )];
    b.extend(v.skipped("snr"));
    let rows: Vec<Vec<String>> = v.summary("snr")["curves"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let s = &c["summary"];
            vec![
                c["schedule"].as_str().unwrap_or("-").to_string(),
                s["zero_crossing_t"]
                    .as_u64()
                    .map_or("never".into(), |t| t.to_string()),
                s["zero_crossing_fraction"].as_f64().map_or("-".into(), pct),
                f(&s["log_snr_at_10pct"], 2),
            ]
        })
        .collect();
    if !rows.is_empty() {
        b.push(Block::Table(
            vec![
                "schedule".into(),
                "log-SNR < 0 from t".into(),
                "(share of T)".into(),
                "log-SNR at 10% of T".into(),
            ],
            rows,
        ));
    }
    b.extend(v.image("snr", "snr.png", format!(
        "Mean log-SNR of the {} training images per diffusion step, linear and cosine schedules at the DDGM's T.",
        v.summary("snr")["images"]
    )));
    b
}

fn ddgm(v: &View) -> Vec<Block> {
    let s = v.summary("ddgm");
    let mut b = vec![Block::Heading("The DDGM".into())];
    b.push(Block::Table(
        vec![
            "parameters".into(),
            "T".into(),
            "loss".into(),
            "steps trained".into(),
            "batch".into(),
            "training time".into(),
        ],
        vec![vec![
            s["parameters"].to_string(),
            s["steps_T"].to_string(),
            s["loss"].as_str().unwrap_or("-").into(),
            s["step"].to_string(),
            s["train"]["batch_size"].to_string(),
            s["train_wall_s"]
                .as_f64()
                .map_or("-".into(), |w| format!("{:.1} min", w / 60.0)),
        ]],
    ));
    b.extend(v.image(
        "sweep",
        "switch_grids.png",
        "Samples of the DDGM and of each DAED from the same noise (Figure 5).".into(),
    ));
    b
}

fn recon(v: &View) -> Vec<Block> {
    let mut b = vec![Block::Heading(
        "Figures 2 and 3: reconstruction from step t".into(),
    )];
    b.extend(v.skipped("recon"));
    let s = v.summary("recon");
    let t_total = s["total_steps"].as_u64().unwrap_or(0);
    if let Some(m) = s["summary"].as_object() {
        let rows = m
            .iter()
            .map(|(name, r)| {
                let at = |k: &str| {
                    r[k].as_u64().map_or("never (on the grid)".into(), |t| {
                        format!(
                            "{t} ({:.1}% of T)",
                            100.0 * t as f64 / t_total.max(1) as f64
                        )
                    })
                };
                vec![
                    name.clone(),
                    at("first_t_mae_above_0_1"),
                    at("first_t_msssim_below_0_9"),
                ]
            })
            .collect();
        b.push(Block::Table(
            vec![
                "dataset".into(),
                "MAE > 0.1 from t".into(),
                "MS-SSIM < 0.9 from t".into(),
            ],
            rows,
        ));
    }
    b.extend(v.image("recon", "recon.png", format!(
        "Images noised to step t and denoised back by the DDGM (MAE on the [0,1] scale, MS-SSIM; mean and std over images). T = {t_total}."
    )));
    for n in v.get("recon").map(|r| r.notes.clone()).unwrap_or_default() {
        b.push(Block::Para(format!("Note: {n}.")));
    }
    b
}

fn losses(v: &View) -> Vec<Block> {
    let mut b = vec![Block::Heading("Figures 13 and 14: per-step losses".into())];
    b.extend(v.skipped("losses"));
    let s = v.summary("losses");
    if s.is_object() {
        b.push(Block::Para(format!(
            "Over {} images: total {} bits/dim; the first step holds {} of the summed VLB terms, the first {} step(s) (1% of T) {}, the first {} steps (10%) {}.",
            s["images"], f(&s["total_bpd"], 4),
            s["share_first_step"].as_f64().map_or("-".into(), pct),
            s["first_1pct_steps"], s["share_first_1pct"].as_f64().map_or("-".into(), pct),
            s["first_10pct_steps"], s["share_first_10pct"].as_f64().map_or("-".into(), pct),
        )));
    }
    b.extend(v.image("losses", "losses.png", "VLB term (bits/dim) per step, its cumulative share, and the epsilon / x0 MSE per step (Figure 14a).".into()));
    b.extend(v.skipped("dynamics"));
    b.extend(v.image(
        "dynamics",
        "dynamics.png",
        "The VLB term at log-spaced steps over training (Figure 13).".into(),
    ));
    b
}

fn daeds(v: &View) -> Vec<Block> {
    let mut b = vec![Block::Heading("DAED: the switch step of each beta1".into())];
    let rows = v.summary("daed")["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let paper = paper::model_row(&v.dataset, r["beta1"].as_f64().unwrap_or(-1.0));
            vec![
                r["beta1"].to_string(),
                r["k"].to_string(),
                r["generator_steps"].to_string(),
                paper.map_or("-".into(), |p| p.steps.to_string()),
                f(&r["log_snr"], 2),
                f(&r["final_loss"], 4),
            ]
        })
        .collect();
    b.push(Block::Table(
        vec![
            "beta1".into(),
            "k".into(),
            "generator steps T-k".into(),
            "paper's T-k".into(),
            "log-SNR at k".into(),
            "DAE final loss".into(),
        ],
        rows,
    ));
    b.push(Block::Para(match v.summary("daed")["mode"].as_str() {
        Some("joint") => "Joint mode: each DAED (generator and DAE) was trained from scratch for \
            the DAE steps shown, not for the DDGM's steps; compare with the DDGM accordingly."
            .into(),
        _ => "Two-stage: each DAE was trained on top of the DDGM, whose steps k+1..T are the \
            generator. The paper's T-k is for its T = 500 process."
            .into(),
    }));
    b
}

fn sweep(v: &View) -> Vec<Block> {
    let (_, table) = paper::model_rows(&v.dataset);
    let mut b = vec![Block::Heading(format!(
        "Figures 4 and 5, Tables 1 and 5: sample quality of the DDGM and each DAED{}",
        if table.is_empty() {
            String::new()
        } else {
            format!(" (the paper's {table} beside)")
        }
    ))];
    b.extend(v.skipped("sweep"));
    let s = v.summary("sweep");
    let rows: Vec<Vec<String>> = s["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let beta1 = r["beta1"].as_f64().unwrap_or(0.0);
            let p = paper::model_row(&v.dataset, beta1);
            let pf = |x: Option<f64>| x.map_or("-".into(), |x| format!("{x}"));
            vec![
                r["model"].as_str().unwrap_or("-").into(),
                f(&r["log_snr"], 2),
                f(&r["fid"], 2),
                f(&r["sfid"], 2),
                r["precision"]
                    .as_f64()
                    .map_or("-".into(), |x| format!("{:.1}", 100.0 * x)),
                r["recall"]
                    .as_f64()
                    .map_or("-".into(), |x| format!("{:.1}", 100.0 * x)),
                pf(p.map(|p| p.fid)),
                pf(p.and_then(|p| p.sfid)),
                pf(p.map(|p| p.precision)),
                pf(p.map(|p| p.recall)),
            ]
        })
        .collect();
    if !rows.is_empty() {
        b.push(Block::Table(
            [
                "model",
                "log-SNR at k",
                "FID",
                "sFID",
                "precision %",
                "recall %",
                "paper FID",
                "paper sFID",
                "paper precision",
                "paper recall",
            ]
            .map(String::from)
            .to_vec(),
            rows,
        ));
        b.push(Block::Para(format!(
            "{} samples per model against {} training images; generator sampling {}, the same noise for every model.",
            s["n"], s["reference_n"],
            match s["sampling"].as_str().unwrap_or("") {
                "" => "over every step".to_string(),
                r => format!("respaced to {r} steps"),
            }
        )));
    }
    b.extend(v.image("sweep", "switch.png", "FID of each DAED against the log-SNR at its switch step; the dashed line is the DDGM's FID (Figure 4).".into()));
    b
}

fn transfer(v: &View) -> Vec<Block> {
    let mut b = vec![Block::Heading("Table 2: denoising other datasets".into())];
    b.extend(v.skipped("transfer"));
    let s = v.summary("transfer");
    let mut rows = Vec::new();
    for r in s["rows"].as_array().into_iter().flatten() {
        for (model, key) in [("DDGM", "ddgm"), ("DAED", "dae")] {
            rows.push(vec![
                r["target"].as_str().unwrap_or("-").into(),
                format!(
                    "{model}{}",
                    if model == "DDGM" {
                        format!(" ({} steps)", r["k"])
                    } else {
                        " (one pass)".into()
                    }
                ),
                f(&r[key]["mae_mean"], 4),
                f(&r[key]["msssim_mean"], 4),
            ]);
        }
    }
    if !rows.is_empty() {
        b.push(Block::Table(
            vec![
                "target".into(),
                "model".into(),
                "MAE".into(),
                "MS-SSIM".into(),
            ],
            rows,
        ));
        b.push(Block::Para(format!(
            "{} images per target noised with beta1 = {}; MAE on the [0,1] scale.",
            s["n"], s["beta1"]
        )));
        let paper_rows = paper::TRANSFER_CIFAR10
            .iter()
            .map(|(m, t, mae, ms)| {
                vec![
                    format!("paper: {m}"),
                    t.to_string(),
                    mae.to_string(),
                    ms.to_string(),
                ]
            })
            .collect();
        b.push(Block::Para("The paper's Table 2 (source CIFAR-10; it has no Fashion-MNIST source), for the ranking:".into()));
        b.push(Block::Table(
            vec![
                "model".into(),
                "target".into(),
                "MAE".into(),
                "MS-SSIM".into(),
            ],
            paper_rows,
        ));
    }
    b.extend(v.image("transfer", "transfer.png", "Per target: originals, noisy inputs, the DDGM's and the DAE's reconstructions (Figure 6).".into()));
    b
}

fn suggestion(v: &View) -> Vec<Block> {
    let s = v.summary("suggest");
    let mut b = vec![Block::Heading("The suggested switch point".into())];
    b.push(Block::Para(match s["beta1"].as_f64() {
        Some(beta1) => format!(
            "Suggested beta1 = {beta1} (switch step k = {}, log-SNR {}): {}.",
            s["k"],
            f(&s["log_snr"], 2),
            s["reason"].as_str().unwrap_or("")
        ),
        None => format!(
            "No suggestion: {}.",
            s["reason"].as_str().unwrap_or("no candidates")
        ),
    }));
    b
}

/// Spearman-free trend: the sign of the slope of `y` over `x` by least squares.
fn slope_sign(pts: &[(f64, f64)]) -> f64 {
    let n = pts.len() as f64;
    if pts.len() < 2 {
        return 0.0;
    }
    let (mx, my) = (
        pts.iter().map(|p| p.0).sum::<f64>() / n,
        pts.iter().map(|p| p.1).sum::<f64>() / n,
    );
    pts.iter()
        .map(|p| (p.0 - mx) * (p.1 - my))
        .sum::<f64>()
        .signum()
}

fn verdict(same: bool) -> &'static str {
    if same {
        "agrees"
    } else {
        "differs"
    }
}

/// Where this run agrees with the paper's findings, one line each.
fn reading(v: &View) -> Vec<String> {
    let mut out = Vec::new();
    let rows: Vec<&Value> = v.summary("sweep")["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let ddgm = rows
        .iter()
        .find(|r| r["k"].as_u64() == Some(0))
        .and_then(|r| r["fid"].as_f64());
    let paper_ddgm = paper::model_row(&v.dataset, 0.0);
    for r in rows.iter().filter(|r| r["k"].as_u64() != Some(0)) {
        let (Some(beta1), Some(fid), Some(g)) = (r["beta1"].as_f64(), r["fid"].as_f64(), ddgm)
        else {
            continue;
        };
        if let (Some(p), Some(pg)) = (paper::model_row(&v.dataset, beta1), paper_ddgm) {
            let (ours, theirs) = (fid <= g, p.fid <= pg.fid);
            out.push(format!(
                "beta1 = {beta1}: DAED FID {fid:.2} vs DDGM {g:.2} here ({}); paper {} vs {} ({}): {}.",
                if ours { "as good or better" } else { "worse" }, p.fid, pg.fid,
                if theirs { "as good or better" } else { "worse" }, verdict(ours == theirs)
            ));
        }
    }
    let trend = |key: &str, paper_val: fn(&paper::PaperRow) -> f64| {
        let ours: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| r["k"].as_u64() != Some(0))
            .filter_map(|r| Some((r["beta1"].as_f64()?, r[key].as_f64()?)))
            .collect();
        let theirs: Vec<(f64, f64)> = ours
            .iter()
            .filter_map(|(b, _)| paper::model_row(&v.dataset, *b).map(|p| (*b, paper_val(&p))))
            .collect();
        (slope_sign(&ours), slope_sign(&theirs), theirs.len() >= 2)
    };
    for (key, name, get) in [
        (
            "fid",
            "FID",
            (|p: &paper::PaperRow| p.fid) as fn(&paper::PaperRow) -> f64,
        ),
        ("recall", "recall", |p: &paper::PaperRow| p.recall),
        ("precision", "precision", |p: &paper::PaperRow| p.precision),
    ] {
        let (ours, theirs, known) = trend(key, get);
        if known {
            let word = |s: f64| {
                if s > 0.0 {
                    "rises"
                } else if s < 0.0 {
                    "falls"
                } else {
                    "is flat"
                }
            };
            out.push(format!(
                "Trend with beta1: {name} {} here and {} in the paper's rows for the same beta1: {}.",
                word(ours), word(theirs), verdict(ours == theirs)
            ));
        }
    }
    if rows.is_empty() {
        out.push("No sample metrics (the sweep did not run): the FID findings of Figure 4 and Tables 1 and 5 are not checked.".into());
    }
    out.push(format!(
        "Paper (Section 6.1): \"{}\".",
        paper::SWITCH_FINDING
    ));
    if let Some(rows) = v.summary("daed")["rows"].as_array() {
        let near4: Vec<String> = rows
            .iter()
            .filter_map(|r| {
                Some(format!(
                    "{} at beta1 = {}",
                    f(&r["log_snr"], 2),
                    r["beta1"].as_f64()?
                ))
            })
            .collect();
        out.push(format!(
            "Here the log-SNR at the switch is {}.",
            near4.join(", ")
        ));
    }
    for r in v.summary("transfer")["rows"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let (dm, am) = (
            r["ddgm"]["mae_mean"].as_f64(),
            r["dae"]["mae_mean"].as_f64(),
        );
        if let (Some(dm), Some(am)) = (dm, am) {
            out.push(format!(
                "Transfer to {}: DAE MAE {am:.4} vs DDGM {dm:.4}; the paper finds the DAE better on every target: {}.",
                r["target"].as_str().unwrap_or("-"), verdict(am < dm)
            ));
        }
    }
    let l = v.summary("losses");
    if let Some(share) = l["share_first_10pct"].as_f64() {
        out.push(format!(
            "Per-step losses: the first 10% of steps hold {} of the VLB terms; the paper (Figure 14) finds the loss concentrated in the first steps (taken here as more than half): {}.",
            pct(share), verdict(share > 0.5)
        ));
    }
    out
}

fn provenance(v: &View, plan: &StudyPlan, opts: &StudyOptions, notes: &[String]) -> Vec<Block> {
    // Stages reused from an earlier run keep the commit that ran them (the table's column).
    let mut b = vec![Block::Heading("Provenance".into())];
    b.push(Block::Para(format!(
        "Report written by {} (commit {}), device {}, analysis seed {}, DDGM training seed {}. The plan is in plan.toml; every stage's inputs, stamp and summary in STAGE/stage.json and results.json.",
        opts.provenance.tool, opts.provenance.commit, opts.device, plan.seed,
        v.summary("ddgm")["train"]["seed"]
    )));
    let rows = v
        .records
        .iter()
        .map(|r| {
            vec![
                r.stage.clone(),
                r.started.clone(),
                format!("{:.1}", r.wall_s),
                r.skipped
                    .clone()
                    .map_or("done".into(), |s| format!("skipped: {s}")),
                r.provenance.commit.clone(),
                r.stamp.get(..12).unwrap_or(&r.stamp).to_string(),
            ]
        })
        .collect();
    b.push(Block::Table(
        vec![
            "stage".into(),
            "started (UTC)".into(),
            "wall s".into(),
            "status".into(),
            "commit".into(),
            "stamp".into(),
        ],
        rows,
    ));
    let mut all: Vec<String> = notes.to_vec();
    for r in v.records {
        all.extend(r.notes.iter().map(|n| format!("{}: {n}", r.stage)));
    }
    if !all.is_empty() {
        b.push(Block::List(all));
    }
    b
}
