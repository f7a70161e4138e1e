//! One evaluation pass: Inception features of an image set reduced to what the metrics need
//! (FID and sFID statistics, the pool_3 features for precision/recall and PRD, the logits for
//! IS), cached on disk by content hash, and the metrics of two such sets.
use std::path::{Path, PathBuf};

use daed_eval::fid::{frechet_distance, FrechetDistance, GaussianStats, StatsAccumulator};
use daed_eval::inception_score::{inception_score, InceptionScore, IS_SPLIT_SIZE};
use daed_eval::prd::{prd, Prd, PrdOptions};
use daed_eval::prdc::{precision_recall, PrecisionRecall, PR_K};
use daed_io::images::ImageSet;
use daed_io::npz::{read_npz, write_npz, NpyArray};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{extract_with, FidInception, Preprocess, LOGITS_DIM, POOL_DIM, SPATIAL_DIM};
use crate::{Error, Result};

/// Environment variable naming the cache directory.
pub const CACHE_ENV: &str = "DAED_CACHE";

/// The cache directory: `$DAED_CACHE`, else `$XDG_CACHE_HOME/daed`, else `~/.cache/daed`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(CACHE_ENV) {
        return Some(PathBuf::from(p));
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(p).join("daed"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("daed"))
}

/// Which metrics to compute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MetricSet {
    /// FID (pool_3).
    pub fid: bool,
    /// sFID (mixed_6/conv).
    pub sfid: bool,
    /// Inception Score of the samples.
    pub is: bool,
    /// k-NN precision and recall.
    pub pr: bool,
    /// PRD (F8, F1/8).
    pub prd: bool,
}

impl MetricSet {
    /// Parses `fid,sfid,is,pr,prd` (any subset, `all` for every one).
    pub fn parse(list: &[String]) -> Result<Self> {
        let mut m = MetricSet::default();
        for s in list {
            match s.trim().to_ascii_lowercase().as_str() {
                "fid" => m.fid = true,
                "sfid" => m.sfid = true,
                "is" => m.is = true,
                "pr" | "prec" | "precision" | "recall" => m.pr = true,
                "prd" => m.prd = true,
                "all" => {
                    m = MetricSet {
                        fid: true,
                        sfid: true,
                        is: true,
                        pr: true,
                        prd: true,
                    }
                }
                "" => {}
                other => {
                    return Err(Error::Invalid(format!(
                        "unknown metric `{other}`; available: fid, sfid, is, pr, prd, all"
                    )))
                }
            }
        }
        if m == MetricSet::default() {
            return Err(Error::Invalid("no metric selected".into()));
        }
        Ok(m)
    }

    /// Whether the per-image pool features are needed (not just their statistics).
    pub fn needs_features(&self) -> bool {
        self.pr || self.prd
    }

    /// Checks, before any feature is computed, that sets of these sizes and kinds can give the
    /// chosen metrics; the error names the set and the metric.
    pub fn check_sets(&self, samples: SetSummary, reference: SetSummary) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(m));
        if samples.stats_only {
            return bad("samples: must be images, not a statistics file".into());
        }
        if reference.stats_only && self.needs_features() {
            return bad(
                "precision/recall and PRD need per-image features of both sets; the \
                 reference is a statistics file (mean and covariance only): pass the reference \
                 images instead"
                    .into(),
            );
        }
        for (what, s) in [("samples", samples), ("reference", reference)] {
            if (self.fid || self.sfid) && s.n < 2 {
                return bad(format!(
                    "{what}: {} image(s); FID and sFID need at least 2 (a covariance)",
                    s.n
                ));
            }
            if self.pr && s.n < PR_K + 1 {
                return bad(format!(
                    "{what}: {} image(s); precision/recall (k = {PR_K}) need at least {}",
                    s.n,
                    PR_K + 1
                ));
            }
        }
        if self.prd && samples.n != reference.n {
            return bad(format!(
                "PRD compares sets of equal size ({} samples vs {} reference images): use --n",
                samples.n, reference.n
            ));
        }
        Ok(())
    }
}

/// Compares the image shapes `[C, H, W]` of two sets. Different shapes are refused unless
/// `allow_resize`; then the returned note says what the Inception's pre-processing does to each.
pub fn check_shapes(
    samples: [usize; 3],
    reference: [usize; 3],
    allow_resize: bool,
) -> Result<Option<String>> {
    if samples == reference {
        return Ok(None);
    }
    let show =
        |[c, h, w]: [usize; 3]| format!("{h}x{w} {}", if c == 1 { "grey" } else { "colour" });
    let (a, b) = (show(samples), show(reference));
    if !allow_resize {
        return Err(Error::Invalid(format!(
            "the samples are {a} images and the reference {b}: they come from different data; \
             pass --allow-resize to compare them anyway"
        )));
    }
    Ok(Some(format!(
        "samples ({a}) and reference ({b}) differ: both are resized to 299x299 by the Inception's \
         pre-processing, grey images repeated over 3 channels"
    )))
}

/// What is known of a set before its features are computed.
#[derive(Clone, Copy, Debug)]
pub struct SetSummary {
    /// Number of images (or of the images behind a statistics file).
    pub n: usize,
    /// Precomputed statistics only (no per-image features).
    pub stats_only: bool,
}

/// What the metrics need from one image set.
#[derive(Clone, Debug)]
pub struct SetFeatures {
    /// Number of images.
    pub n: usize,
    /// FID statistics (pool_3).
    pub fid: GaussianStats,
    /// sFID statistics (mixed_6/conv, 2,023 values).
    pub sfid: Option<GaussianStats>,
    /// `n x 2048` pool_3 features, when kept.
    pub pool: Option<Vec<f32>>,
    /// `n x 1008` logits, when the network has them and they were kept.
    pub logits: Option<Vec<f32>>,
}

impl SetFeatures {
    /// Statistics read from a pytorch-fid `.npz` (`mu`, `sigma`; `mu_s`, `sigma_s` when present).
    pub fn from_stats_file(path: &Path) -> Result<Self> {
        let fid = GaussianStats::read_npz(path, false)?;
        let sfid = GaussianStats::read_npz(path, true).ok();
        Ok(Self {
            n: fid.n,
            fid,
            sfid,
            pool: None,
            logits: None,
        })
    }

    /// Writes the statistics as pytorch-fid `.npz` (plus `mu_s`, `sigma_s`, `n`).
    pub fn write_stats(&self, path: &Path) -> Result<()> {
        GaussianStats::write_npz(path, &self.fid, self.sfid.as_ref())?;
        Ok(())
    }
}

/// A content hash of the images and the feature settings (the cache key).
pub fn cache_key(set: &ImageSet, pre: Preprocess, weights: &Path) -> String {
    let mut h = Sha256::new();
    h.update(b"daed-eval-features-v1\0");
    h.update(pre.as_str().as_bytes());
    let wlen = std::fs::metadata(weights).map(|m| m.len()).unwrap_or(0);
    h.update(wlen.to_le_bytes());
    for v in [set.len(), set.channels, set.height, set.width] {
        h.update((v as u64).to_le_bytes());
    }
    h.update(&set.pixels);
    let d = h.finalize();
    d.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// Runs the network over `set`, accumulating the statistics batch by batch and keeping the
/// per-image pool features and logits when asked.
pub fn compute_features(
    net: &FidInception,
    pre: Preprocess,
    set: &ImageSet,
    batch_size: usize,
    keep_pool: bool,
    keep_logits: bool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<SetFeatures> {
    let mut fid = StatsAccumulator::new(POOL_DIM);
    let mut sfid = StatsAccumulator::new(SPATIAL_DIM);
    let mut pool = keep_pool.then(Vec::new);
    let mut logits = (keep_logits && net.has_logits()).then(Vec::new);
    extract_with(
        net,
        pre,
        set,
        batch_size,
        &mut |b| {
            fid.add(&b.pool)?;
            sfid.add(&b.spatial)?;
            if let Some(p) = &mut pool {
                p.extend_from_slice(&b.pool);
            }
            if let (Some(l), Some(x)) = (&mut logits, &b.logits) {
                l.extend_from_slice(x);
            }
            Ok(())
        },
        progress,
    )?;
    Ok(SetFeatures {
        n: set.len(),
        fid: fid.finish()?,
        sfid: Some(sfid.finish()?),
        pool,
        logits,
    })
}

fn cache_file(dir: &Path, key: &str) -> PathBuf {
    dir.join("eval").join(format!("{key}.npz"))
}

/// Reads cached features; `None` when absent, unreadable, or lacking the pool features or
/// logits asked for (they are then recomputed).
pub fn read_cache(
    dir: &Path,
    key: &str,
    need_pool: bool,
    need_logits: bool,
) -> Option<SetFeatures> {
    let path = cache_file(dir, key);
    let arrays = read_npz(&path).ok()?;
    let fid = GaussianStats::read_npz(&path, false).ok()?;
    let sfid = GaussianStats::read_npz(&path, true).ok()?;
    let pool = match arrays.get("pool") {
        Some(a) => Some(a.to_f32_vec()),
        None if need_pool => return None,
        None => None,
    };
    let logits = arrays.get("logits").map(|a| a.to_f32_vec());
    if need_logits && logits.is_none() {
        return None;
    }
    Some(SetFeatures {
        n: fid.n,
        fid,
        sfid: Some(sfid),
        pool,
        logits,
    })
}

/// Writes features to the cache.
pub fn write_cache(dir: &Path, key: &str, f: &SetFeatures) -> Result<PathBuf> {
    let path = cache_file(dir, key);
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).map_err(|e| Error::io(p, e))?;
    }
    let mut arrays = f.fid.npz_arrays(false);
    if let Some(s) = &f.sfid {
        arrays.extend(s.npz_arrays(true));
    }
    if let Some(p) = &f.pool {
        arrays.push(("pool".into(), NpyArray::f32(&[f.n, POOL_DIM], p.clone())));
    }
    if let Some(l) = &f.logits {
        arrays.push((
            "logits".into(),
            NpyArray::f32(&[f.n, LOGITS_DIM], l.clone()),
        ));
    }
    let refs: Vec<(&str, &NpyArray)> = arrays.iter().map(|(k, a)| (k.as_str(), a)).collect();
    write_npz(&path, &refs)?;
    Ok(path)
}

/// One side of an evaluation as `metrics.json` records it.
#[derive(Clone, Debug, Serialize)]
pub struct SetRecord {
    /// What was read (the info of its features: kind, count, shape, cache, timing).
    pub info: serde_json::Value,
    /// The file, folder or dataset name given.
    pub source: String,
}

/// What `daed eval` writes (`metrics.json`; fields in the order they have always been written).
#[derive(Clone, Debug, Serialize)]
pub struct EvalRecord {
    /// The Inception weights used.
    pub inception: PathBuf,
    /// The metrics.
    pub metrics: Metrics,
    /// Seconds spent on the metrics themselves.
    pub metrics_seconds: f64,
    /// The pre-processing convention.
    pub preprocess: String,
    /// The reference set.
    pub reference: SetRecord,
    /// The samples.
    pub samples: SetRecord,
    /// Seconds for the whole evaluation.
    pub total_seconds: f64,
}

impl EvalRecord {
    /// Writes `metrics.json` and `metrics.md` (the Markdown table row) into `out`; returns them.
    pub fn write(&self, out: &Path) -> Result<[PathBuf; 2]> {
        std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        let paths = [out.join("metrics.json"), out.join("metrics.md")];
        let json = serde_json::to_string_pretty(self).expect("the record serialises") + "\n";
        daed_io::atomic::write_atomic(&paths[0], json.as_bytes())?;
        daed_io::atomic::write_atomic(&paths[1], self.metrics.markdown().as_bytes())?;
        Ok(paths)
    }
}

/// The metrics of one evaluation.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Metrics {
    /// FID and how it was computed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fid: Option<FrechetDistance>,
    /// sFID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sfid: Option<FrechetDistance>,
    /// Inception Score of the samples.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inception_score: Option<InceptionScore>,
    /// Precision and recall (k = 3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub precision_recall: Option<PrecisionRecall>,
    /// PRD summary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prd: Option<Prd>,
}

impl Metrics {
    /// The paper's table row: `| FID | sFID | IS | Prec | Rec |` (a dash for a metric not computed).
    pub fn markdown(&self) -> String {
        let f = |v: Option<f64>, p: usize| v.map_or("-".to_string(), |x| format!("{x:.p$}"));
        let pr = self.precision_recall.as_ref();
        format!(
            "| FID | sFID | IS | Prec | Rec |\n|---|---|---|---|---|\n| {} | {} | {} | {} | {} |\n",
            f(self.fid.as_ref().map(|d| d.value), 2),
            f(self.sfid.as_ref().map(|d| d.value), 2),
            f(self.inception_score.as_ref().map(|s| s.mean), 2),
            f(pr.map(|p| p.precision), 2),
            f(pr.map(|p| p.recall), 2),
        )
    }
}

/// Computes `which` metrics of `samples` against `reference`; errors say what is missing
/// (statistics-only references cannot give precision/recall, weights without logits no IS).
pub fn compute_metrics(
    samples: &SetFeatures,
    reference: &SetFeatures,
    which: MetricSet,
    logits_hint: &str,
) -> Result<Metrics> {
    let mut m = Metrics::default();
    if which.fid {
        m.fid = Some(frechet_distance(&samples.fid, &reference.fid)?);
    }
    if which.sfid {
        let (Some(a), Some(b)) = (&samples.sfid, &reference.sfid) else {
            return Err(Error::Invalid(
                "sFID needs spatial statistics (`mu_s`, `sigma_s`) on both sides; the reference \
                 statistics file has none: pass the reference images instead"
                    .into(),
            ));
        };
        m.sfid = Some(frechet_distance(a, b)?);
    }
    if which.is {
        let Some(l) = &samples.logits else {
            return Err(Error::Invalid(format!(
                "the Inception Score needs the 1008-way logits layer, which these weights lack \
                 ({logits_hint}); use pytorch-fid's pt_inception-2015-12-05-6726825d.pth converted \
                 to safetensors (it has `fc.weight`, `fc.bias`) via --inception"
            )));
        };
        m.inception_score = Some(inception_score(l, LOGITS_DIM, IS_SPLIT_SIZE)?);
    }
    if which.pr || which.prd {
        let (Some(s), Some(r)) = (&samples.pool, &reference.pool) else {
            return Err(Error::Invalid(
                "precision/recall and PRD need per-image features of both sets; a statistics \
                 file only has mean and covariance: pass the reference images instead"
                    .into(),
            ));
        };
        if which.pr {
            m.precision_recall = Some(precision_recall(r, s, POOL_DIM, PR_K)?);
        }
        if which.prd {
            m.prd = Some(prd(r, s, POOL_DIM, &PrdOptions::default())?);
        }
    }
    Ok(m)
}
