//! `daed eval`: FID, sFID, IS, precision/recall and PRD of samples against a reference, and
//! `daed eval stats`: pytorch-fid statistics of a dataset.
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use daed_core::metrics::evaluate::{
    cache_key, check_shapes, compute_features, compute_metrics, default_cache_dir, read_cache,
    write_cache, EvalRecord, MetricSet, SetFeatures, SetRecord, SetSummary,
};
use daed_core::metrics::{default_weights, FidInception, Preprocess, INCEPTION_ENV};
use daed_io::datasets::{self, DatasetSpec};
use daed_io::folder::{read_folder_limit, FolderOptions};
use daed_io::images::ImageSet;
use daed_io::npz::read_npz;

use crate::progress::bar;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct EvalArgs {
    #[command(subcommand)]
    cmd: Option<EvalCmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum EvalCmd {
    /// Writes pytorch-fid statistics (`mu`, `sigma`, and sFID's `mu_s`, `sigma_s`) of a set.
    Stats(StatsArgs),
    /// FID of a run's checkpoints against its training time: a table and a plot.
    Curve(crate::curve::CurveArgs),
    /// Several runs' curves (`daed eval curve`'s TAG.json files) in one plot and one table.
    Compare(crate::curve::CompareArgs),
}

/// Options shared by every form.
#[derive(Args, Clone)]
pub(crate) struct Common {
    /// Split when a set is a dataset name.
    #[arg(long, default_value = "test")]
    pub(crate) split: String,
    /// Data file or directory for a dataset name (default: the usual search).
    #[arg(long)]
    pub(crate) data: Option<PathBuf>,
    /// Use the first N images of each set.
    #[arg(long)]
    pub(crate) n: Option<usize>,
    /// Images per Inception forward pass.
    #[arg(long, default_value_t = 50)]
    pub(crate) batch_size: usize,
    /// Inception weights (safetensors; default: $DAED_INCEPTION or ../shared/data/inception).
    #[arg(long)]
    pub(crate) inception: Option<PathBuf>,
    /// Pre-processing convention.
    #[arg(long, default_value = "pytorch-fid")]
    pub(crate) preprocess: String,
    /// Device (auto, flex, torch, cuda).
    #[arg(long, default_value = "auto")]
    pub(crate) device: String,
    /// Feature cache directory (default: $DAED_CACHE, else ~/.cache/daed).
    #[arg(long)]
    pub(crate) cache: Option<PathBuf>,
    /// Do not read or write the feature cache.
    #[arg(long)]
    pub(crate) no_cache: bool,
}

#[derive(Args)]
struct RunArgs {
    /// Samples: guided-diffusion .npz (`arr_0`, uint8 NHWC), a folder of images, or a dataset
    /// name; repeat it to join several files in order (e.g. shards drawn with other seeds).
    #[arg(long, required = true)]
    samples: Vec<String>,
    /// Reference: .npz images or statistics (`mu`, `sigma`), a folder, or a dataset name.
    #[arg(long, required = true)]
    reference: Option<String>,
    /// Metrics, comma-separated: fid, sfid, is, pr, prd (or all).
    #[arg(long, value_delimiter = ',', default_value = "fid,sfid,pr")]
    metrics: Vec<String>,
    /// Output directory (metrics.json, metrics.md).
    #[arg(long, required = true)]
    out: Option<PathBuf>,
    /// Sanity check: add Gaussian noise of this standard deviation (on the [0, 1] scale, clipped,
    /// re-quantised to 8 bits) to the samples before evaluating.
    #[arg(long)]
    sample_noise: Option<f64>,
    /// Seed of --sample-noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Compare sets of different image sizes or channel counts (both are resized to 299x299).
    #[arg(long)]
    allow_resize: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct StatsArgs {
    /// A dataset name, a folder of images, or a .npz of images.
    set: String,
    /// Output statistics file (.npz).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    common: Common,
}

/// A set to evaluate: images, or precomputed statistics.
pub(crate) enum Source {
    Images(ImageSet),
    Stats(SetFeatures),
}

impl Source {
    pub(crate) fn summary(&self) -> SetSummary {
        match self {
            Source::Images(s) => SetSummary {
                n: s.len(),
                stats_only: false,
            },
            Source::Stats(f) => SetSummary {
                n: f.n,
                stats_only: true,
            },
        }
    }
}

pub(crate) fn load_source(spec: &str, c: &Common) -> Result<Source> {
    let path = Path::new(spec);
    let set = if path.is_file() {
        let arrays = read_npz(path).with_context(|| format!("reading {spec}"))?;
        if arrays.contains_key("mu") {
            return Ok(Source::Stats(SetFeatures::from_stats_file(path)?));
        }
        if !arrays.contains_key("arr_0") {
            bail!(
                "{spec}: neither images (`arr_0`, guided-diffusion format) nor FID statistics (`mu`, `sigma`); keys: {}",
                arrays.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
        daed_io::npz::images_from_npz(&arrays, path, c.n)?
    } else if path.is_dir() {
        read_folder_limit(path, &FolderOptions::default(), c.n)
            .with_context(|| format!("reading images from {spec}"))?
    } else {
        // `NAME` or `NAME:SPLIT` (e.g. fashion-mnist:train).
        let (name, split) = match spec.rsplit_once(':') {
            Some((n, s)) if s.parse::<daed_io::datasets::Split>().is_ok() => (n, s),
            _ => (spec, c.split.as_str()),
        };
        let mut ds = DatasetSpec::new(name.parse().with_context(|| {
            format!("`{spec}` is not an existing .npz file or folder, nor a dataset name")
        })?);
        ds.split = split.parse()?;
        ds.path = c.data.clone();
        ds.limit = c.n;
        datasets::load(&ds).with_context(|| format!("loading {spec}"))?
    };
    if set.is_empty() {
        bail!("{spec}: no images");
    }
    if let Some(n) = c.n {
        if set.len() < n {
            bail!("{spec}: --n {n} but only {} images", set.len());
        }
    }
    Ok(Source::Images(set))
}

pub(crate) struct Extractor {
    pub(crate) net: FidInception,
    pre: Preprocess,
    weights: PathBuf,
    cache: Option<PathBuf>,
    batch_size: usize,
}

impl Extractor {
    pub(crate) fn new(c: &Common) -> Result<Self> {
        if c.batch_size == 0 {
            bail!("--batch-size must be at least 1");
        }
        let weights = match &c.inception {
            Some(p) => p.clone(),
            None => default_weights().with_context(|| {
                format!(
                    "no Inception weights: pass --inception PATH (fid_inception_2015-12-05_pool3.safetensors) or set {INCEPTION_ENV}"
                )
            })?,
        };
        let device = daed_core::device::resolve(&c.device)?;
        let net = FidInception::open(&weights, &device)?;
        Ok(Self {
            net,
            pre: c.preprocess.parse()?,
            weights,
            cache: if c.no_cache {
                None
            } else {
                c.cache.clone().or_else(default_cache_dir)
            },
            batch_size: c.batch_size,
        })
    }

    /// Features of `set`, from the cache when possible; returns (features, from cache, seconds).
    pub(crate) fn features(&self, set: &ImageSet, what: &str) -> Result<(SetFeatures, bool, f64)> {
        let key = cache_key(set, self.pre, &self.weights);
        let need_logits = self.net.has_logits();
        if let Some(dir) = &self.cache {
            if let Some(f) = read_cache(dir, &key, true, need_logits) {
                if f.n == set.len() {
                    println!("{what}: {} images, features from the cache ({key})", f.n);
                    return Ok((f, true, 0.0));
                }
            }
        }
        let start = Instant::now();
        let pb = bar(set.len() as u64, what);
        let f = compute_features(
            &self.net,
            self.pre,
            set,
            self.batch_size,
            true,
            true,
            &mut |done, _| pb.set_position(done as u64),
        )?;
        pb.finish();
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{what}: {} images in {secs:.1} s ({:.2} images/s)",
            set.len(),
            set.len() as f64 / secs
        );
        if let Some(dir) = &self.cache {
            match write_cache(dir, &key, &f) {
                Ok(p) => println!("cached {what} features in {}", p.display()),
                Err(e) => eprintln!("warning: could not cache features: {e}"),
            }
        }
        Ok((f, false, secs))
    }

    pub(crate) fn source_features(
        &self,
        src: Source,
        what: &str,
    ) -> Result<(SetFeatures, serde_json::Value)> {
        match src {
            Source::Stats(f) => {
                let info = serde_json::json!({"kind": "statistics", "n": f.n});
                Ok((f, info))
            }
            Source::Images(set) => {
                let (f, cached, secs) = self.features(&set, what)?;
                let info = serde_json::json!({
                    "kind": "images",
                    "n": set.len(),
                    "shape": [set.channels, set.height, set.width],
                    "from_cache": cached,
                    "seconds": secs,
                    "images_per_s": if secs > 0.0 { set.len() as f64 / secs } else { 0.0 },
                });
                Ok((f, info))
            }
        }
    }
}

pub fn run(a: EvalArgs) -> Result<()> {
    match a.cmd {
        Some(EvalCmd::Stats(s)) => stats(s),
        Some(EvalCmd::Curve(c)) => crate::curve::run(c),
        Some(EvalCmd::Compare(c)) => crate::curve::compare(c),
        None => evaluate(a.run),
    }
}

fn evaluate(a: RunArgs) -> Result<()> {
    let (false, Some(reference), Some(out)) = (a.samples.is_empty(), &a.reference, &a.out) else {
        bail!("--samples, --reference and --out are required");
    };
    let samples = &a.samples;
    let which = MetricSet::parse(&a.metrics)?;
    let start = Instant::now();
    let (src_s, src_r) = load_sets(&a, samples, reference, which)?;
    daed_io::atomic::check_writable_dir(out)?;
    let ex = Extractor::new(&a.common)?;
    if which.is && !ex.net.has_logits() {
        bail!(
            "--metrics is: the Inception Score needs the 1008-way logits layer, which {} lacks; \
             pass pytorch-fid's weights (pt_inception-2015-12-05-6726825d.pth, which has the \
             `fc` layer) via --inception, or drop `is`",
            ex.weights.display()
        );
    }
    let (fr, info_r) = ex.source_features(src_r, "reference")?;
    let (fs, info_s) = ex.source_features(src_s, "samples")?;
    let t = Instant::now();
    let m = compute_metrics(&fs, &fr, which, &ex.weights.display().to_string())?;
    let metric_secs = t.elapsed().as_secs_f64();
    print_notes(&m);
    if let Some(p) = &m.prd {
        println!("PRD: F8 = {:.3}, F1/8 = {:.3}", p.f_8, p.f_1_8);
    }
    print!("{}", m.markdown());
    let record = EvalRecord {
        inception: ex.weights.clone(),
        metrics: m,
        metrics_seconds: metric_secs,
        preprocess: ex.pre.as_str().to_string(),
        reference: SetRecord {
            info: info_r,
            source: reference.clone(),
        },
        samples: SetRecord {
            info: info_s,
            source: samples.join(" + "),
        },
        total_seconds: start.elapsed().as_secs_f64(),
    };
    let [jp, mp] = record.write(out)?;
    println!(
        "wrote {} and {} ({:.1} s)",
        jp.display(),
        mp.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Says where the square root was not finite and pytorch-fid's epsilon was added.
fn print_notes(m: &daed_core::metrics::evaluate::Metrics) {
    for (name, d) in [("FID", &m.fid), ("sFID", &m.sfid)] {
        let Some(d) = d else { continue };
        if let Some(eps) = d.eps_added {
            println!(
                "note: {name}: the square root was not finite (ranks {:?}); added {eps:e} to the \
                 diagonals as pytorch-fid does (without it: {:.4})",
                d.ranks, d.value_without_eps
            );
        }
    }
}

/// Reads both sets and checks them against each other and the metrics before any feature is
/// computed; adds `--sample-noise` to the samples.
fn load_sets(
    a: &RunArgs,
    samples: &[String],
    reference: &str,
    which: MetricSet,
) -> Result<(Source, Source)> {
    let mut src_s = load_samples(samples, &a.common)?;
    let src_r = load_source(reference, &a.common)?;
    which.check_sets(src_s.summary(), src_r.summary())?;
    if let (Source::Images(s), Source::Images(r)) = (&src_s, &src_r) {
        let shape = |x: &ImageSet| [x.channels, x.height, x.width];
        if let Some(note) = check_shapes(shape(s), shape(r), a.allow_resize)? {
            println!("note: {note}");
        }
    }
    if let (Source::Images(set), Some(sigma)) = (&mut src_s, a.sample_noise) {
        if !(sigma.is_finite() && sigma >= 0.0) {
            bail!("--sample-noise must be a non-negative number");
        }
        add_noise(set, sigma, a.seed);
        println!(
            "samples: added Gaussian noise, sigma {sigma} on the [0, 1] scale (seed {})",
            a.seed
        );
    }
    Ok((src_s, src_r))
}

/// The samples of one `--samples`, or of several joined in order (images only, of one shape,
/// no file twice); `--n` takes the first N of the joined set.
fn load_samples(specs: &[String], c: &Common) -> Result<Source> {
    if let [one] = specs {
        return load_source(one, c);
    }
    let whole = Common {
        n: None,
        ..c.clone()
    };
    let mut joined: Option<ImageSet> = None;
    let files: Vec<PathBuf> = (specs.iter())
        .map(|a| std::fs::canonicalize(a).unwrap_or_else(|_| PathBuf::from(a)))
        .collect();
    for (i, spec) in specs.iter().enumerate() {
        if files[..i].contains(&files[i]) {
            bail!("--samples: {spec} is given twice (its images would count twice)");
        }
        let Source::Images(set) = load_source(spec, &whole)? else {
            bail!("--samples: {spec} holds statistics, which cannot be joined with other samples");
        };
        match &mut joined {
            None => joined = Some(set),
            Some(j) => j
                .extend(&set)
                .with_context(|| format!("--samples: joining {spec} to the files before it"))?,
        }
    }
    let Some(mut set) = joined else {
        bail!("--samples is required");
    };
    if let Some(n) = c.n {
        if set.len() < n {
            bail!(
                "--samples: --n {n} but the {} files hold {} images",
                specs.len(),
                set.len()
            );
        }
        set = set.take(n);
    }
    println!("samples: {} images from {} files", set.len(), specs.len());
    Ok(Source::Images(set))
}

/// Adds N(0, sigma²) noise on the [0, 1] scale, clipped and rounded back to 8 bits.
fn add_noise(set: &mut ImageSet, sigma: f64, seed: u64) {
    let mut rng = daed_core::rng::Rng::stream(seed, daed_core::rng::Stream::EvalNoise);
    let mut spare: Option<f64> = None;
    for p in &mut set.pixels {
        let z = match spare.take() {
            Some(z) => z,
            None => {
                let u1 = rng.next_f64().max(1e-300);
                let u2 = rng.next_f64();
                let r = (-2.0 * u1.ln()).sqrt();
                let t = 2.0 * std::f64::consts::PI * u2;
                spare = Some(r * t.sin());
                r * t.cos()
            }
        };
        let v = (*p as f64 / 255.0 + sigma * z).clamp(0.0, 1.0);
        *p = (v * 255.0).round() as u8;
    }
}

fn stats(a: StatsArgs) -> Result<()> {
    let start = Instant::now();
    if let Some(p) = a.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        daed_io::atomic::check_writable_dir(p)?;
    }
    let ex = Extractor::new(&a.common)?;
    let src = load_source(&a.set, &a.common)?;
    let Source::Images(set) = src else {
        bail!("{} is already a statistics file", a.set);
    };
    let (f, _, _) = ex.features(&set, "stats")?;
    if let Some(p) = a.out.parent() {
        if !p.as_os_str().is_empty() {
            std::fs::create_dir_all(p).with_context(|| format!("creating {}", p.display()))?;
        }
    }
    f.write_stats(&a.out)?;
    println!(
        "wrote {} ({} images; mu, sigma, mu_s, sigma_s) in {:.1} s",
        a.out.display(),
        f.n,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
