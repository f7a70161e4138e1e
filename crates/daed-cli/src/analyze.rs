//! `daed analyze`: SNR per step, reconstruction error from step t, per-step loss terms.
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use daed_core::analysis::conform;
use daed_core::analysis::losses::loss_breakdown;
use daed_core::analysis::recon::{reconstruction_curve, step_grid};
use daed_core::burn::tensor::Device;
use daed_core::diffusion::schedule::alphas_cumprod;
use daed_core::diffusion::{BetaSchedule, ScheduleSpec};
use daed_core::train::Checkpoint;
use daed_io::datasets::{self, DatasetSpec};
use daed_io::images::ImageSet;
use daed_io::plot::{Figure, Panel, Series};
use daed_io::table::{write_json, Table};

use crate::progress::{bar, tracker};

#[derive(Subcommand)]
pub enum AnalyzeCmd {
    /// log-SNR per step over a dataset (Figures 1 and 7); no model needed.
    Snr(SnrArgs),
    /// Error of noising to step t and denoising back, MAE and MS-SSIM (Figures 2 and 3).
    Recon(ReconArgs),
    /// Per-step VLB term (bits/dim), epsilon MSE and x0 MSE (Figure 14a).
    Losses(LossesArgs),
    /// The per-step VLB recorded during training (`train.dynamics_every`) over time (Figure 13).
    Dynamics {
        /// The run directory (holding dynamics.jsonl).
        run: PathBuf,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// DAEs with several beta1 on one DDGM: same-noise grids, FID vs log-SNR (Figures 4, 5).
    Switch(crate::switch::SwitchArgs),
    /// Denoise other datasets noised with beta1: DAE vs the DDGM's first k steps (Table 2).
    Transfer(TransferArgs),
}

#[derive(Args)]
pub struct TransferArgs {
    /// The DDGM checkpoint (or run).
    #[arg(long)]
    ddgm: PathBuf,
    /// The DAED checkpoint (or run) whose DAE is used.
    #[arg(long)]
    dae: PathBuf,
    /// Noise level; must equal the DAE's.
    #[arg(long)]
    beta1: Option<f64>,
    /// Target datasets (comma-separated).
    #[arg(long, value_delimiter = ',', required = true)]
    target: Vec<String>,
    /// train or test split of the targets.
    #[arg(long, default_value = "test")]
    split: String,
    /// Images per target.
    #[arg(long, default_value_t = 256)]
    n: usize,
    #[command(flatten)]
    run: RunOpts,
}

/// Options shared by the commands that run a model.
#[derive(Args)]
pub struct RunOpts {
    /// Images per forward pass.
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Seed of the noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Use the raw weights instead of the EMA.
    #[arg(long)]
    no_ema: bool,
    /// Device.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
}

impl RunOpts {
    /// Checks `n` and the batch size, resolves the device.
    fn device(&self, n: usize) -> Result<Device> {
        if n == 0 || self.batch_size == 0 {
            bail!("--n and --batch-size must be at least 1");
        }
        Ok(daed_core::device::resolve(&self.device)?)
    }
}

#[derive(Args)]
pub struct SnrArgs {
    /// Dataset name(s), comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    dataset: Vec<String>,
    /// A file or directory holding the data (for a single dataset).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Schedule(s): linear, cosine (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "linear")]
    schedule: Vec<String>,
    /// Number(s) of steps T (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    steps: Vec<usize>,
    /// First beta of the linear schedule before scaling by 1000/T.
    #[arg(long, default_value_t = 1e-4)]
    beta_start: f64,
    /// Last beta of the linear schedule before scaling.
    #[arg(long, default_value_t = 0.02)]
    beta_end: f64,
    /// train or test.
    #[arg(long, default_value = "train")]
    split: String,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
pub struct ReconArgs {
    /// A checkpoint (or run) directory.
    #[arg(long)]
    checkpoint: PathBuf,
    /// The model's dataset (its first curve).
    #[arg(long)]
    dataset: String,
    /// Other datasets to evaluate on (resized / converted to the model's images).
    #[arg(long, value_delimiter = ',')]
    eval_dataset: Vec<String>,
    /// A file or directory for --dataset.
    #[arg(long)]
    data: Option<PathBuf>,
    /// train or test split of every dataset.
    #[arg(long, default_value = "test")]
    split: String,
    /// Cover the first this fraction of the steps.
    #[arg(long, default_value_t = 0.2)]
    until: f64,
    /// Number of steps on the grid.
    #[arg(long, default_value_t = 20)]
    points: usize,
    /// Images per dataset.
    #[arg(long, default_value_t = 256)]
    n: usize,
    #[command(flatten)]
    run: RunOpts,
}

#[derive(Args)]
pub struct LossesArgs {
    /// A checkpoint (or run) directory.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Dataset to evaluate on.
    #[arg(long)]
    dataset: String,
    /// A file or directory holding it.
    #[arg(long)]
    data: Option<PathBuf>,
    /// train or test.
    #[arg(long, default_value = "test")]
    split: String,
    /// Number of images.
    #[arg(long, default_value_t = 1000)]
    n: usize,
    #[command(flatten)]
    run: RunOpts,
}

pub fn run(c: AnalyzeCmd) -> Result<()> {
    let start = Instant::now();
    match c {
        AnalyzeCmd::Snr(a) => snr(a)?,
        AnalyzeCmd::Recon(a) => recon(a)?,
        AnalyzeCmd::Losses(a) => losses(a)?,
        AnalyzeCmd::Transfer(a) => transfer(a)?,
        AnalyzeCmd::Switch(a) => crate::switch::run(a)?,
        AnalyzeCmd::Dynamics { run, out } => dynamics(&run, &out)?,
    }
    println!("took {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}

fn load(name: &str, data: Option<&Path>, split: &str, limit: Option<usize>) -> Result<ImageSet> {
    let mut spec = DatasetSpec::new(name.parse()?);
    spec.split = split.parse()?;
    spec.path = data.map(Path::to_path_buf);
    spec.limit = limit;
    datasets::load(&spec).with_context(|| format!("loading {name}"))
}

fn snr(a: SnrArgs) -> Result<()> {
    if a.data.is_some() && a.dataset.len() > 1 {
        bail!("--data applies to a single --dataset; give one dataset per call or set DAED_DATA");
    }
    let mut curves = Vec::new();
    for ds in &a.dataset {
        let set = load(ds, a.data.as_deref(), &a.split, None)?;
        let powers = daed_eval::snr::image_powers(&set);
        for sch in &a.schedule {
            let kind: BetaSchedule = sch.parse()?;
            for &t in &a.steps {
                let spec = ScheduleSpec {
                    kind,
                    steps: t,
                    beta_start: a.beta_start,
                    beta_end: a.beta_end,
                    scale_to_steps: true,
                };
                spec.validate()?;
                let ab = alphas_cumprod(&spec.betas());
                let label = format!("{ds} {sch} T={t}");
                curves.push(daed_eval::snr::snr_curve(&label, &powers, &ab)?);
            }
        }
    }
    daed_eval::snr::write_snr_outputs(&a.out, &curves)?;
    for c in &curves {
        let s = c.summary();
        println!(
            "{}: {} images; log-SNR < 0 from t = {} ({}), log-SNR at 10% of T = {:.3}",
            c.label,
            c.n_images,
            s.zero_crossing_t
                .map(|t| t.to_string())
                .unwrap_or("-".into()),
            s.zero_crossing_fraction
                .map(|f| format!("{:.1}% of T", 100.0 * f))
                .unwrap_or("never".into()),
            s.log_snr_at_10pct
        );
    }
    println!("wrote {}/snr.csv, snr.png, summary.json", a.out.display());
    Ok(())
}

fn recon(a: ReconArgs) -> Result<()> {
    let device = a.run.device(a.n)?;
    let ck = Checkpoint::open(&a.checkpoint)?;
    let (net, d) = ck.load_unet(!a.run.no_ema, &device)?;
    let steps = step_grid(d.num_steps(), a.until, a.points)?;
    let shape = ck.state.image_shape;
    let mut points = Vec::new();
    let mut names = vec![(a.dataset.clone(), a.data.clone())];
    names.extend(a.eval_dataset.iter().map(|n| (n.clone(), None)));
    for (name, path) in names {
        let set = load(&name, path.as_deref(), &a.split, Some(a.n))?;
        let (set, note) = conform(&set, shape, &name)?;
        if let Some(n) = note {
            println!("note: {n}");
        }
        let pb = bar(1, &format!("recon {name}"));
        let p = reconstruction_curve(
            &net,
            &d,
            &set,
            &name,
            &steps,
            a.run.batch_size,
            a.run.seed,
            &device,
            &mut tracker(&pb),
        )?;
        pb.finish();
        points.extend(p);
    }
    daed_eval::recon::write_recon_outputs(&a.run.out, &points, d.num_steps())?;
    for (name, s) in daed_eval::recon::recon_summary(&points, d.num_steps()) {
        println!(
            "{name}: MAE > 0.1 first at t = {}, MS-SSIM < 0.9 first at t = {} (T = {})",
            s.first_t_mae_above_0_1
                .map(|t| t.to_string())
                .unwrap_or("never".into()),
            s.first_t_msssim_below_0_9
                .map(|t| t.to_string())
                .unwrap_or("never".into()),
            d.num_steps()
        );
    }
    println!(
        "wrote {}/recon.csv, recon.png, summary.json",
        a.run.out.display()
    );
    Ok(())
}

fn losses(a: LossesArgs) -> Result<()> {
    let device = a.run.device(a.n)?;
    let ck = Checkpoint::open(&a.checkpoint)?;
    let (net, d) = ck.load_unet(!a.run.no_ema, &device)?;
    let set = load(&a.dataset, a.data.as_deref(), &a.split, Some(a.n))?;
    let (set, note) = conform(&set, ck.state.image_shape, &a.dataset)?;
    if let Some(n) = note {
        println!("note: {n}");
    }
    let pb = bar(1, "losses");
    let br = loss_breakdown(
        &net,
        &d,
        &set,
        a.run.batch_size,
        a.run.seed,
        &device,
        &mut tracker(&pb),
    )?;
    pb.finish();
    let share = br.cumulative_share();
    let mut table = Table::new(vec!["t", "vlb_bpd", "eps_mse", "x0_mse", "cum_share"]);
    for (s, c) in br.steps.iter().zip(&share) {
        table.push(vec![
            s.t.to_string(),
            format!("{:.6e}", s.vlb_bpd),
            format!("{:.6e}", s.eps_mse),
            format!("{:.6e}", s.x0_mse),
            format!("{c:.6}"),
        ]);
    }
    std::fs::create_dir_all(&a.run.out)?;
    table.write_csv(a.run.out.join("losses.csv"))?;
    let tn = br.steps.len();
    let one_pct = ((tn as f64) * 0.01).ceil().max(1.0) as usize;
    let summary = serde_json::json!({
        "total_bpd": br.total_bpd(),
        "prior_bpd": br.prior_bpd,
        "share_first_step": share[0],
        "share_first_1pct_steps": share[one_pct - 1],
        "first_1pct_steps": one_pct,
        "images": set.len(),
        "checkpoint_step": ck.state.step,
    });
    write_json(a.run.out.join("summary.json"), &summary)?;
    let ts: Vec<f64> = br.steps.iter().map(|s| s.t as f64).collect();
    let series = |name: &str, ys: Vec<f64>| Series {
        name: name.into(),
        xs: ts.clone(),
        ys,
        band: None,
    };
    let fig = Figure {
        panels: vec![
            Panel {
                title: "VLB term per step".into(),
                x_label: "t".into(),
                y_label: "bits/dim".into(),
                series: vec![series(
                    "L_t",
                    br.steps.iter().map(|s| s.vlb_bpd.max(1e-8)).collect(),
                )],
                log_y: true,
                hlines: vec![],
            },
            Panel {
                title: "cumulative share of the VLB".into(),
                x_label: "t".into(),
                y_label: "share".into(),
                series: vec![series("cum. share", share.clone())],
                log_y: false,
                hlines: vec![],
            },
            Panel {
                title: "MSE per step".into(),
                x_label: "t".into(),
                y_label: "mse".into(),
                series: vec![
                    series(
                        "eps",
                        br.steps.iter().map(|s| s.eps_mse.max(1e-8)).collect(),
                    ),
                    series("x0", br.steps.iter().map(|s| s.x0_mse.max(1e-8)).collect()),
                ],
                log_y: true,
                hlines: vec![],
            },
        ],
        width: 1500,
        height: 450,
    };
    fig.save_png(a.run.out.join("losses.png"))?;
    println!(
        "total {:.4} bits/dim; the first step holds {:.1}% of the VLB, the first {one_pct} step(s) (1%) {:.1}%",
        br.total_bpd(),
        100.0 * share[0],
        100.0 * share[one_pct - 1]
    );
    println!(
        "wrote {}/losses.csv, losses.png, summary.json",
        a.run.out.display()
    );
    Ok(())
}

fn transfer(a: TransferArgs) -> Result<()> {
    use daed_core::daed::DaedNets;
    let device = a.run.device(a.n)?;
    let ck_g = Checkpoint::open(&a.ddgm)?;
    let ck_d = Checkpoint::open(&a.dae)?;
    let (ddgm, d) = ck_g.load_unet(!a.run.no_ema, &device)?;
    let (dae, _) = ck_d.load_model::<DaedNets>(!a.run.no_ema, &device)?;
    let beta1 = ck_d.config.daed.beta1;
    if let Some(b) = a.beta1 {
        if (b - beta1).abs() > 1e-12 {
            bail!(
                "--beta1 {b} differs from the DAE's beta1 {beta1} ({})",
                ck_d.dir.display()
            );
        }
    }
    let shape = ck_g.state.image_shape;
    if ck_d.state.image_shape != shape {
        bail!(
            "the DDGM works on {:?} images, the DAE on {:?}",
            shape,
            ck_d.state.image_shape
        );
    }
    let mut table = Table::new(["target", "model", "mae", "msssim", "k"]);
    let mut rows_md = vec![("DDGM", Vec::new()), ("DAED", Vec::new())];
    let mut grids = Vec::new();
    for name in &a.target {
        let set = load(name, None, &a.split, Some(a.n))?;
        let (set, note) = conform(&set, shape, name)?;
        if let Some(n) = note {
            println!("note: {n}");
        }
        let (pd, pa, imgs, k) = daed_core::analysis::transfer::transfer(
            &ddgm,
            &d,
            &dae,
            beta1,
            &set,
            name,
            a.run.batch_size,
            a.run.seed,
            &device,
        )?;
        for (model, p) in [("DDGM", &pd), ("DAED", &pa)] {
            table.push([
                name.clone(),
                model.into(),
                format!("{:.4}", p.mae_mean),
                format!("{:.4}", p.msssim_mean),
                k.to_string(),
            ]);
        }
        rows_md[0]
            .1
            .push(format!("{:.3} | {:.2}", pd.mae_mean, pd.msssim_mean));
        rows_md[1]
            .1
            .push(format!("{:.3} | {:.2}", pa.mae_mean, pa.msssim_mean));
        let m = set.len().min(8);
        let [c, h, w] = shape;
        let per = c * h * w;
        let part = |v: &[f32]| ImageSet::from_f32(c, h, w, &v[..m * per]);
        grids.push((format!("{name}: original"), part(&imgs.original)));
        grids.push((format!("{name}: noisy"), part(&imgs.noisy)));
        grids.push((format!("{name}: DDGM"), part(&imgs.ddgm)));
        grids.push((format!("{name}: DAE"), part(&imgs.dae)));
        println!(
            "{name}: DDGM (k = {k} steps) MAE {:.4} MS-SSIM {:.4}; DAE MAE {:.4} MS-SSIM {:.4}",
            pd.mae_mean, pd.msssim_mean, pa.mae_mean, pa.msssim_mean
        );
    }
    std::fs::create_dir_all(&a.run.out)?;
    table.write_csv(a.run.out.join("transfer.csv"))?;
    let mut md = format!("Reconstruction of images noised with beta1 = {beta1} (MAE on the [0,1] scale, MS-SSIM)\n\n| Model |");
    for t in &a.target {
        md.push_str(&format!(" {t} MAE | {t} MS-SSIM |"));
    }
    md.push_str("\n|---|");
    md.push_str(&"---|---|".repeat(a.target.len()));
    md.push('\n');
    for (model, cells) in &rows_md {
        md.push_str(&format!("| {model} | {} |\n", cells.join(" | ")));
    }
    daed_io::atomic::write_atomic(a.run.out.join("transfer.md"), md.as_bytes())?;
    let items: Vec<(&str, &ImageSet)> = grids.iter().map(|(n, s)| (n.as_str(), s)).collect();
    daed_io::grid::save_grids_side_by_side(a.run.out.join("transfer.png"), &items, 1)?;
    print!("{md}");
    println!(
        "wrote {}/transfer.csv, transfer.md, transfer.png",
        a.run.out.display()
    );
    Ok(())
}

fn dynamics(run: &Path, out: &Path) -> Result<()> {
    let path = run.join("dynamics.jsonl");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "{}: no dynamics recorded (train with train.dynamics_every > 0)",
            path.display()
        )
    })?;
    let mut table = Table::new(["train_step", "t", "vlb_bpd"]);
    let mut series: std::collections::BTreeMap<u64, (Vec<f64>, Vec<f64>)> = Default::default();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{} line {}: not JSON", path.display(), i + 1))?;
        let step = v["train_step"]
            .as_u64()
            .with_context(|| format!("{} line {}: no train_step", path.display(), i + 1))?;
        let ts = v["t"]
            .as_array()
            .with_context(|| format!("{} line {}: no t", path.display(), i + 1))?;
        let vs = v["vlb_bpd"]
            .as_array()
            .with_context(|| format!("{} line {}: no vlb_bpd", path.display(), i + 1))?;
        for (t, val) in ts.iter().zip(vs) {
            let (t, val) = (t.as_u64().unwrap_or(0), val.as_f64().unwrap_or(f64::NAN));
            table.push([step.to_string(), t.to_string(), format!("{val:.6e}")]);
            let e = series.entry(t).or_default();
            e.0.push(step as f64);
            e.1.push(val.max(1e-8));
        }
    }
    if series.is_empty() {
        bail!("{}: empty", path.display());
    }
    std::fs::create_dir_all(out)?;
    table.write_csv(out.join("dynamics.csv"))?;
    let keys: Vec<u64> = series.keys().copied().collect();
    let pick: Vec<u64> = if keys.len() <= 8 {
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
    let fig = Figure {
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
    };
    fig.save_png(out.join("dynamics.png"))?;
    println!(
        "{} records of {} steps; wrote {}/dynamics.csv, dynamics.png",
        text.lines().count(),
        keys.len(),
        out.display()
    );
    Ok(())
}
