//! `daed analyze switch` (Figures 4 and 5): DAEs with several beta1 on top of one DDGM, sampled
//! from the same noise, scored with FID / precision / recall against the training data.
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use daed_core::config::ModelKind;
use daed_core::daed::{switch_index, DaeLoss, DaedMode, DaedNets};
use daed_core::metrics::evaluate::{compute_features, compute_metrics, MetricSet, SetFeatures};
use daed_core::metrics::{default_weights, FidInception, Preprocess};
use daed_core::model::DiffusionNet;
use daed_core::sample::SampleOptions;
use daed_core::train::trainer::load_data;
use daed_core::train::{Checkpoint, Trainer};
use daed_io::images::ImageSet;
use daed_io::plot::{Figure, Panel, Series};
use daed_io::table::{write_json, Table};

use crate::progress::{bar, tracker};

#[derive(Args)]
pub struct SwitchArgs {
    /// The trained DDGM (checkpoint or run directory).
    #[arg(long)]
    ddgm: PathBuf,
    /// The beta1 values (comma-separated).
    #[arg(long, value_delimiter = ',', required = true)]
    beta1: Vec<f64>,
    /// Training steps of each DAE (an existing DAE run in DIR with at least this many is reused).
    #[arg(long, default_value_t = 2000)]
    dae_steps: u64,
    /// Samples per model for the metrics.
    #[arg(long, default_value_t = 1000)]
    n: usize,
    /// Training images used as the reference.
    #[arg(long, default_value_t = 1000)]
    reference_n: usize,
    /// Generator sampling steps (respacing); 0 = all.
    #[arg(long, default_value_t = 100)]
    sample_steps: usize,
    /// Images per forward pass.
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Seed of the noise (the same for every beta1).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The FID Inception weights (default: $DAED_INCEPTION or shared/data/inception).
    #[arg(long)]
    inception: Option<PathBuf>,
    /// Device.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Output directory (DAE runs go in DIR/dae_beta1_*).
    #[arg(long)]
    out: PathBuf,
}

struct Row {
    label: String,
    beta1: f64,
    k: usize,
    log_snr: f64,
    samples: ImageSet,
}

pub fn run(a: SwitchArgs) -> Result<()> {
    if a.n == 0 || a.batch_size == 0 || a.reference_n == 0 {
        bail!("--n, --reference-n and --batch-size must be at least 1");
    }
    let device = daed_core::device::resolve(&a.device)?;
    let ck = Checkpoint::open(&a.ddgm)?;
    if ck.config.model != ModelKind::Ddgm {
        bail!("{}: --ddgm must be a DDGM checkpoint", ck.dir.display());
    }
    let weights = a
        .inception
        .clone()
        .or_else(default_weights)
        .context("no Inception weights: pass --inception FILE or set DAED_INCEPTION")?;
    let inception = FidInception::open(&weights, &device)?;
    let mut data_cfg = ck.config.clone();
    data_cfg.data.limit = None;
    let data = load_data(&data_cfg)?;
    // The DAEs train on the DDGM's own data: the set above unless the DDGM used a limit.
    let train_data = match ck.config.data.limit {
        None => data.clone(),
        Some(_) => load_data(&ck.config)?,
    };
    let shape = ck.state.image_shape;
    let mean_ln_p = {
        let p = daed_eval::snr::image_powers(&data);
        p.iter().map(|x| x.ln()).sum::<f64>() / p.len() as f64
    };
    let steps = (a.sample_steps > 0).then_some(a.sample_steps);
    let opts = SampleOptions::from_flags(steps, false, 0.0, a.seed)?;
    let mut rows = Vec::new();
    // The DDGM itself, as the reference point.
    let (ddgm, d) = ck.load_unet(true, &device)?;
    rows.push(Row {
        label: "DDGM".into(),
        beta1: 0.0,
        k: 0,
        log_snr: f64::INFINITY,
        samples: draw(&ddgm, &d, shape, &a, &opts, &device, "DDGM")?,
    });
    for &b in &a.beta1 {
        let dir = a.out.join(format!("dae_beta1_{b}"));
        let reuse = Checkpoint::open(&dir)
            .map(|c| c.state.step >= a.dae_steps)
            .unwrap_or(false);
        if !reuse {
            let mut cfg = ck.config.clone();
            cfg.name = format!("dae_beta1_{b}");
            cfg.model = ModelKind::Daed;
            cfg.daed.beta1 = b;
            cfg.daed.mode = DaedMode::TwoStage;
            cfg.daed.ddgm = Some(ck.dir.clone());
            cfg.daed.dae_loss = DaeLoss::Mse;
            cfg.train.steps = a.dae_steps;
            cfg.train.out_dir = Some(dir.clone());
            cfg.train.checkpoint_every = a.dae_steps;
            cfg.train.sample_every = 0;
            cfg.sample.n = 16;
            cfg.sample.respacing = opts.respacing.clone();
            cfg.device = a.device.clone();
            eprintln!(
                "training the DAE for beta1 = {b} ({} steps) in {}",
                a.dae_steps,
                dir.display()
            );
            let mut t = Trainer::<DaedNets>::new(cfg, train_data.clone())?;
            t.run(&mut crate::progress::TrainBar::new())?;
        }
        let dck = Checkpoint::open(&dir)?;
        let (nets, dd) = dck.load_model::<DaedNets>(true, &device)?;
        let k = switch_index(&d.alphas_cumprod, b);
        let ab = d.alphas_cumprod[k - 1];
        let log_snr = mean_ln_p + (ab / (1.0 - ab)).ln();
        let samples = draw(&nets, &dd, shape, &a, &opts, &device, &format!("beta1={b}"))?;
        rows.push(Row {
            label: format!("beta1={b}"),
            beta1: b,
            k,
            log_snr,
            samples,
        });
    }
    // Metrics against the training data.
    let reference = data.take(a.reference_n);
    let which = MetricSet {
        fid: true,
        pr: true,
        ..Default::default()
    };
    let ref_f = features(&inception, &reference, &a, "reference")?;
    let mut table = Table::new(["beta1", "k", "log_snr", "fid", "precision", "recall"]);
    let mut points = (Vec::new(), Vec::new());
    let mut summary = Vec::new();
    for r in &rows {
        let f = features(&inception, &r.samples, &a, &r.label)?;
        let m = compute_metrics(&f, &ref_f, which, &weights.display().to_string())?;
        let fid = m.fid.as_ref().map(|x| x.value).unwrap_or(f64::NAN);
        let (p, rc) = m
            .precision_recall
            .as_ref()
            .map(|x| (x.precision, x.recall))
            .unwrap_or((f64::NAN, f64::NAN));
        let label = if r.k == 0 {
            "ddgm".to_string()
        } else {
            r.beta1.to_string()
        };
        table.push([
            label,
            r.k.to_string(),
            format!("{:.4}", r.log_snr),
            format!("{fid:.3}"),
            format!("{p:.4}"),
            format!("{rc:.4}"),
        ]);
        if r.k > 0 {
            points.0.push(r.log_snr);
            points.1.push(fid);
        }
        summary.push(serde_json::json!({"model": r.label, "beta1": r.beta1, "k": r.k, "log_snr": if r.log_snr.is_finite() { Some(r.log_snr) } else { None }, "fid": fid, "precision": p, "recall": rc}));
        println!("{}: k = {}, log-SNR at the split {:.3}, FID {fid:.2}, precision {p:.3}, recall {rc:.3}", r.label, r.k, r.log_snr);
    }
    std::fs::create_dir_all(&a.out)?;
    table.write_csv(a.out.join("switch.csv"))?;
    write_json(a.out.join("summary.json"), &summary)?;
    let ddgm_fid = summary[0]["fid"].as_f64().unwrap_or(f64::NAN);
    let fig = Figure {
        panels: vec![Panel {
            title: "DAED: FID vs log-SNR at the switch".into(),
            x_label: "log SNR at the split".into(),
            y_label: "FID".into(),
            series: vec![Series {
                name: "DAED".into(),
                xs: points.0,
                ys: points.1,
                band: None,
            }],
            log_y: false,
            hlines: vec![ddgm_fid],
        }],
        width: 800,
        height: 500,
    };
    fig.save_png(a.out.join("switch.png"))?;
    let grids: Vec<(String, ImageSet)> = rows
        .iter()
        .map(|r| (r.label.clone(), r.samples.take(16)))
        .collect();
    let items: Vec<(&str, &ImageSet)> = grids.iter().map(|(l, s)| (l.as_str(), s)).collect();
    daed_io::grid::save_grids_side_by_side(a.out.join("switch_grids.png"), &items, 4)?;
    println!(
        "wrote {}/switch.csv, switch.png (dashed: the DDGM's FID), switch_grids.png, summary.json",
        a.out.display()
    );
    Ok(())
}

fn draw<M: DiffusionNet>(
    net: &M,
    d: &daed_core::diffusion::GaussianDiffusion,
    shape: [usize; 3],
    a: &SwitchArgs,
    opts: &SampleOptions,
    device: &daed_core::burn::tensor::Device,
    what: &str,
) -> Result<ImageSet> {
    let pb = bar(1, &format!("sample {what}"));
    let imgs = net.sample(d, shape, a.n, a.batch_size, opts, device, &mut tracker(&pb))?;
    pb.finish();
    Ok(ImageSet::from_f32(shape[0], shape[1], shape[2], &imgs))
}

fn features(net: &FidInception, set: &ImageSet, a: &SwitchArgs, what: &str) -> Result<SetFeatures> {
    let pb = bar(set.len() as u64, &format!("inception {what}"));
    let f = compute_features(
        net,
        Preprocess::PytorchFid,
        set,
        a.batch_size.min(50),
        true,
        false,
        &mut |k, _| pb.set_position(k as u64),
    )?;
    pb.finish();
    Ok(f)
}
