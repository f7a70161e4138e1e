//! Sample quality over training: the FID of a run's checkpoints against the training time the run
//! logged, as a table (Markdown, CSV, JSON) and a plot. Each checkpoint's samples are the file
//! `daed sample` writes (`CHECKPOINT/samples/TAG.npz`), reused when present, so an interrupted
//! curve resumes where it stopped and `daed sample` output is never drawn twice.
use std::path::{Path, PathBuf};

use daed_io::images::ImageSet;
use daed_io::plot::{Figure, Panel, Series};
use daed_io::table::{fmt_f, write_json, Table};
use serde::{Deserialize, Serialize};

use super::evaluate::{compute_metrics, MetricSet, SetFeatures};
use crate::sample::SampleOptions;
use crate::train::checkpoint::{list, step_of};
use crate::train::Checkpoint;
use crate::{Error, Result};

/// What the curve evaluates.
#[derive(Clone, Debug)]
pub struct CurveSettings {
    /// Images sampled at each checkpoint.
    pub n: usize,
    /// Sampling options: the same noise at every checkpoint.
    pub sampling: SampleOptions,
    /// Images per forward pass.
    pub batch_size: usize,
    /// The EMA weights (true) or the raw ones.
    pub ema: bool,
    /// The checkpoint steps to evaluate; empty: every complete checkpoint of the run.
    pub steps: Vec<u64>,
    /// The device name (auto, flex, cuda, ...).
    pub device: String,
    /// Training hours at which to extrapolate the FID with a [`PowerLaw`] fitted to the curve.
    pub extrapolate_to: Vec<f64>,
}

impl CurveSettings {
    /// Checks the counts and sampling options before any work.
    pub fn validate(&self) -> Result<()> {
        if self.n < 2 || self.batch_size == 0 {
            return Err(Error::Invalid(
                "the curve needs --n of at least 2 (a covariance) and --sample-batch of at least 1"
                    .into(),
            ));
        }
        if let Some(h) = self
            .extrapolate_to
            .iter()
            .find(|h| !(h.is_finite() && **h > 0.0))
        {
            return Err(Error::Invalid(format!(
                "--extrapolate-to {h}: training hours must be positive"
            )));
        }
        self.sampling.validate()
    }
}

/// Reports progress of the curve.
pub trait CurveProgress {
    /// `done` of `total` units of the stage `what` (sampling one checkpoint).
    fn stage(&mut self, what: &str, done: usize, total: usize);
    /// A line for the user.
    fn message(&mut self, msg: &str);
}

/// One checkpoint of the curve.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CurvePoint {
    /// The training step of the checkpoint.
    pub step: u64,
    /// Training seconds up to this step, as the run's log has them ([`TrainingClock`]).
    pub train_s: f64,
    /// Steps up to this one whose time no log line had (estimated at the next window's rate).
    #[serde(default)]
    pub estimated_steps: u64,
    /// Mean training loss of the log window that ends at or after this step.
    pub loss: Option<f64>,
    /// FID of the samples against the reference.
    pub fid: f64,
    /// The samples (`.npz`).
    pub samples: PathBuf,
    /// Seconds spent sampling, by every process that drew a batch of them (0 when the samples
    /// were already there).
    pub sample_s: f64,
}

/// The curve as `TAG.json` records it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Curve {
    /// The run directory.
    pub run: PathBuf,
    /// Samples per checkpoint.
    pub n: usize,
    /// What the samples were compared with.
    pub reference: String,
    /// EMA weights (true) or raw.
    pub ema: bool,
    /// The samples' file name stem (count, method, steps, seed).
    pub samples_tag: String,
    /// One point per checkpoint, by step.
    pub points: Vec<CurvePoint>,
    /// FIDs extrapolated from the points (not measured), when asked for and a fit exists.
    #[serde(default)]
    pub extrapolated: Vec<Extrapolated>,
}

/// A power law `FID = scale * hours^(-exponent)`, fitted by least squares to log FID against
/// log training hours over the curve's later points: those at half the last point's training
/// time or more (early points, far from where the curve is heading, are left out).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PowerLaw {
    /// FID at one hour.
    pub scale: f64,
    /// How fast the FID falls: a doubling of training time divides it by `2^exponent`.
    pub exponent: f64,
    /// The steps of the points it was fitted to.
    pub fitted_to: Vec<u64>,
}

impl PowerLaw {
    /// The fit to `points`' later half in time (points with a non-positive FID or training time
    /// left out); `None` with fewer than two such points at distinct times.
    pub fn fit(points: &[CurvePoint]) -> Option<PowerLaw> {
        let last = points.iter().map(|p| p.train_s).fold(f64::NAN, f64::max);
        let used: Vec<&CurvePoint> = points
            .iter()
            .filter(|p| p.train_s >= 0.5 * last && p.train_s > 0.0 && p.fid > 0.0)
            .collect();
        let xy: Vec<(f64, f64)> = used
            .iter()
            .map(|p| ((p.train_s / 3600.0).ln(), p.fid.ln()))
            .collect();
        let n = xy.len() as f64;
        let mx = xy.iter().map(|v| v.0).sum::<f64>() / n;
        let my = xy.iter().map(|v| v.1).sum::<f64>() / n;
        let sxx: f64 = xy.iter().map(|v| (v.0 - mx).powi(2)).sum();
        let sxy: f64 = xy.iter().map(|v| (v.0 - mx) * (v.1 - my)).sum();
        if xy.len() < 2 || sxx.is_nan() || sxx <= 1e-12 {
            return None;
        }
        let slope = sxy / sxx;
        Some(PowerLaw {
            scale: (my - slope * mx).exp(),
            exponent: -slope,
            fitted_to: used.iter().map(|p| p.step).collect(),
        })
    }

    /// The fitted FID after `hours` of training.
    pub fn at(&self, hours: f64) -> f64 {
        self.scale * hours.powf(-self.exponent)
    }
}

/// An FID the curve's [`PowerLaw`] predicts, not one measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Extrapolated {
    /// Training hours.
    pub hours: f64,
    /// The predicted FID.
    pub fid: f64,
    /// The fit it comes from.
    pub fit: PowerLaw,
}

/// Training time per step from a run's `log.jsonl`. Each line closes a window of `window` steps
/// (older logs: the steps since the previous line) timed by its `steps_per_sec`; the time at a
/// step sums the windows before it and the part of its own. Windows include what the trainer did
/// between steps (checkpoints, sample grids), not start-up; a resumed run's lines continue the
/// sum (a resume rewinds the log to its checkpoint). Steps no line timed (a log that starts after
/// a resume from another run, or steps redone after a kill) are counted at the rate of the next
/// window and reported as estimated.
#[derive(Clone, Debug, Default)]
pub struct TrainingClock {
    windows: Vec<Window>,
}

/// One logged window.
#[derive(Clone, Copy, Debug)]
struct Window {
    /// Its last step.
    end: u64,
    /// Training seconds at its end.
    end_s: f64,
    /// Seconds per step in it.
    per_step: f64,
    /// Its mean loss.
    loss: Option<f64>,
    /// Steps up to its end whose time was estimated.
    estimated: u64,
}

/// Where a step falls on the clock.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClockReading {
    /// Training seconds up to the step.
    pub secs: f64,
    /// The mean loss of the window holding the step.
    pub loss: Option<f64>,
    /// Steps up to it that no log line timed (their time is estimated).
    pub estimated_steps: u64,
}

impl TrainingClock {
    /// Reads `RUN/log.jsonl` ([`TrainingClock::parse`]).
    pub fn read(run_dir: &Path) -> Result<Self> {
        let path = run_dir.join("log.jsonl");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        Self::parse(&text, &path)
    }

    /// Parses the lines of a `log.jsonl` (`origin` names it in errors). Lines that are not a
    /// JSON object with a `step` (a write cut by a kill) are skipped, as a resume drops them; a
    /// step that does not follow the one before, or a line without a positive rate, is an error.
    pub fn parse(text: &str, origin: &Path) -> Result<Self> {
        let mut windows: Vec<Window> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let Some(step) = v.get("step").and_then(|s| s.as_u64()) else {
                continue;
            };
            let bad = |what: String| {
                Error::ckpt(
                    origin,
                    format!(
                        "line {}: {what} (`daed doctor RUN` checks a run's log)",
                        i + 1
                    ),
                )
            };
            let rate = v["steps_per_sec"]
                .as_f64()
                .filter(|r| r.is_finite() && *r > 0.0)
                .ok_or_else(|| bad("no positive `steps_per_sec`".into()))?;
            let prev = windows.last().copied();
            let (prev_end, prev_s, prev_est) =
                prev.map_or((0, 0.0, 0), |w| (w.end, w.end_s, w.estimated));
            if step <= prev_end {
                return Err(bad(format!("step {step} does not follow step {prev_end}")));
            }
            let span = step - prev_end;
            let timed = v["window"].as_u64().map_or(span, |w| w.min(span));
            windows.push(Window {
                end: step,
                end_s: prev_s + span as f64 / rate,
                per_step: 1.0 / rate,
                loss: v["loss"].as_f64(),
                estimated: prev_est + (span - timed),
            });
        }
        Ok(Self { windows })
    }

    /// The last logged step (0 for an empty log).
    pub fn last_step(&self) -> u64 {
        self.windows.last().map_or(0, |w| w.end)
    }

    /// Where `step` falls; `None` past the last logged step.
    pub fn at(&self, step: u64) -> Option<ClockReading> {
        let w = *self.windows.iter().find(|w| w.end >= step)?;
        Some(ClockReading {
            secs: w.end_s - (w.end - step) as f64 * w.per_step,
            loss: w.loss,
            estimated_steps: w.estimated,
        })
    }
}

/// The complete checkpoints of `run_dir` to evaluate: those at `steps` (each must exist), or all.
pub fn select_checkpoints(run_dir: &Path, steps: &[u64]) -> Result<Vec<Checkpoint>> {
    let complete: Vec<PathBuf> = list(run_dir)?
        .into_iter()
        .filter(|d| d.join("state.json").is_file())
        .collect();
    if complete.is_empty() {
        return Err(Error::ckpt(
            run_dir,
            "no complete checkpoints in checkpoints/",
        ));
    }
    let chosen: Vec<&PathBuf> = if steps.is_empty() {
        complete.iter().collect()
    } else {
        let mut v = Vec::new();
        for &s in steps {
            let d = complete
                .iter()
                .find(|d| step_of(d) == Some(s))
                .ok_or_else(|| {
                    let have: Vec<String> = complete
                        .iter()
                        .filter_map(|d| step_of(d).map(|s| s.to_string()))
                        .collect();
                    Error::ckpt(
                        run_dir,
                        format!(
                            "no complete checkpoint at step {s} (there are: {})",
                            have.join(", ")
                        ),
                    )
                })?;
            v.push(d);
        }
        v.sort_by_key(|d| step_of(d));
        v.dedup();
        v
    };
    chosen.into_iter().map(|d| Checkpoint::open(d)).collect()
}

/// Everything the curve needs, checked before any sampling or feature.
pub struct CurvePlan {
    /// The settings (the sampling precision is the run's `sample.precision`).
    pub settings: CurveSettings,
    /// The checkpoints, by step.
    pub checkpoints: Vec<Checkpoint>,
    /// The run's training clock.
    pub clock: TrainingClock,
    /// Where the curve goes.
    pub out: PathBuf,
    /// The curve so far: the points already in `out` for the same run, samples and reference.
    pub curve: Curve,
    /// The device `settings.device` names, resolved once.
    device: burn::tensor::Device,
}

impl CurvePlan {
    /// Reads the run's log and checkpoints, any samples already drawn and any curve already in
    /// `out`, and checks them all against `s` and the reference (`reference` describes it fully:
    /// name, split, count, pre-processing, Inception weights).
    pub fn new(run_dir: &Path, mut s: CurveSettings, reference: &str, out: &Path) -> Result<Self> {
        s.validate()?;
        let checkpoints = select_checkpoints(run_dir, &s.steps)?;
        let first = &checkpoints[0];
        s.sampling.precision = first.config.sample.precision;
        let device = crate::device::resolve(&s.device)?;
        crate::draw::check_sampling(first, s.ema, &s.sampling, &device)?;
        let clock = TrainingClock::read(run_dir)?;
        for ck in &checkpoints {
            if clock.at(ck.state.step).is_none() {
                return Err(Error::ckpt(
                    run_dir.join("log.jsonl"),
                    format!(
                        "ends at step {}, before the checkpoint at step {}: its training time is unknown",
                        clock.last_step(),
                        ck.state.step
                    ),
                ));
            }
            existing_samples(ck, &s)?;
        }
        let curve = Curve {
            run: run_dir.to_path_buf(),
            n: s.n,
            reference: reference.to_string(),
            ema: s.ema,
            samples_tag: s.sampling.file_tag(s.n, s.ema),
            points: Vec::new(),
            extrapolated: Vec::new(),
        }
        .merged_with_existing(out)?;
        Ok(Self {
            settings: s,
            checkpoints,
            clock,
            out: out.to_path_buf(),
            curve,
            device,
        })
    }

    /// Evaluates every checkpoint: samples (or reuses) `n` images, gets their features from
    /// `features` and their FID against `reference`. The outputs in `out` are rewritten after each
    /// checkpoint, so a stopped curve keeps what it finished.
    pub fn run(
        &self,
        reference: &SetFeatures,
        features: &mut dyn FnMut(&ImageSet, &str) -> Result<SetFeatures>,
        progress: &mut dyn CurveProgress,
    ) -> Result<Curve> {
        let (s, device) = (&self.settings, &self.device);
        let mut curve = self.curve.clone();
        let which = MetricSet {
            fid: true,
            ..Default::default()
        };
        for ck in &self.checkpoints {
            let step = ck.state.step;
            let (set, samples, mut sample_s) = checkpoint_samples(ck, s, device, progress)?;
            let f = features(&set, &format!("features, step {step}"))?;
            let fid = compute_metrics(&f, reference, which, "")?
                .fid
                .map(|d| d.value)
                .filter(|v| v.is_finite())
                .ok_or_else(|| Error::Invalid(format!("the FID at step {step} is not finite")))?;
            let clock = self.clock.at(step).unwrap_or(ClockReading {
                secs: f64::NAN,
                loss: None,
                estimated_steps: 0,
            });
            progress.message(&format!(
                "step {step}: FID {fid:.2} after {:.0} s of training",
                clock.secs
            ));
            if let Some(old) = curve.points.iter().find(|p| p.step == step) {
                if sample_s == 0.0 && old.samples == samples {
                    sample_s = old.sample_s;
                }
            }
            curve.points.retain(|p| p.step != step);
            curve.points.push(CurvePoint {
                step,
                train_s: clock.secs,
                estimated_steps: clock.estimated_steps,
                loss: clock.loss,
                fid,
                samples,
                sample_s,
            });
            curve.points.sort_by_key(|p| p.step);
            curve.extrapolate(&s.extrapolate_to);
            curve.write(&self.out)?;
        }
        Ok(curve)
    }
}

/// The samples file of `ck` for `s`, checked when it exists: `s.n` images of the checkpoint's
/// shape (read in full), else `None`.
fn existing_samples(ck: &Checkpoint, s: &CurveSettings) -> Result<Option<(ImageSet, PathBuf)>> {
    let npz = samples_path(ck, s);
    if !npz.is_file() {
        return Ok(None);
    }
    let arrays = daed_io::npz::read_npz(&npz)?;
    let set = daed_io::npz::images_from_npz(&arrays, &npz, None)?;
    let shape = [set.channels, set.height, set.width];
    if set.len() != s.n || shape != ck.state.image_shape {
        return Err(Error::ckpt(
            &npz,
            format!(
                "holds {} images of {shape:?}, not {} of the model's {:?}: move it away (or pass --n {})",
                set.len(),
                s.n,
                ck.state.image_shape,
                set.len()
            ),
        ));
    }
    Ok(Some((set, npz)))
}

/// Where `daed sample` writes (and the curve reads) the samples of `ck` for `s`.
fn samples_path(ck: &Checkpoint, s: &CurveSettings) -> PathBuf {
    ck.dir
        .join("samples")
        .join(format!("{}.npz", s.sampling.file_tag(s.n, s.ema)))
}

/// The samples of one checkpoint: the file `daed sample` writes (`CHECKPOINT/samples/TAG.npz`)
/// when there, else drawn and written there with its grid.
fn checkpoint_samples(
    ck: &Checkpoint,
    s: &CurveSettings,
    device: &burn::tensor::Device,
    progress: &mut dyn CurveProgress,
) -> Result<(ImageSet, PathBuf, f64)> {
    let npz = samples_path(ck, s);
    let keep = crate::draw::keep_beside(&npz, ck, s.ema, s.n, s.batch_size, &s.sampling, device)?;
    if let Some((set, npz)) = existing_samples(ck, s)? {
        progress.message(&format!(
            "step {}: samples from {}",
            ck.state.step,
            npz.display()
        ));
        if keep.open().is_ok() {
            keep.finish()?; // batches of this run left by a stop between the write and the clean-up
        }
        return Ok((set, npz, 0.0));
    }
    let kept = keep.open()?;
    let before = keep.seconds()?;
    if kept > 0 {
        progress.message(&format!(
            "step {}: continuing, {kept} batches were drawn before in {before:.0} s ({})",
            ck.state.step,
            keep.dir().display()
        ));
    }
    let opts = SampleOptions {
        keep: Some(keep.clone()),
        ..s.sampling.clone()
    };
    let start = std::time::Instant::now();
    let what = format!("sample, step {}", ck.state.step);
    let mut tick = |k, total| progress.stage(&what, k, total);
    let (imgs, _) = crate::draw::sample(ck, s.ema, s.n, s.batch_size, &opts, device, &mut tick)?;
    let secs = before + start.elapsed().as_secs_f64();
    let [c, h, w] = ck.state.image_shape;
    let set = ImageSet::from_f32(c, h, w, &imgs);
    crate::draw::save(&npz, &set, None)?;
    keep.finish()?;
    Ok((set, npz, secs))
}

impl Curve {
    /// The table: step, training time, loss, FID, samples.
    pub fn table(&self) -> Table {
        let mut t = Table::new([
            "step".to_string(),
            "training time (s)".to_string(),
            "training time (h)".to_string(),
            "loss".to_string(),
            format!("FID (N = {})", self.n),
            "samples".to_string(),
        ]);
        for p in &self.points {
            t.push([
                p.step.to_string(),
                fmt_f(p.train_s, 0),
                fmt_f(p.train_s / 3600.0, 2),
                p.loss.map_or("-".to_string(), |l| fmt_f(l, 4)),
                fmt_f(p.fid, 2),
                p.samples.display().to_string(),
            ]);
        }
        for e in &self.extrapolated {
            let steps: Vec<String> = e.fit.fitted_to.iter().map(|s| s.to_string()).collect();
            t.push([
                "-".to_string(),
                fmt_f(e.hours * 3600.0, 0),
                fmt_f(e.hours, 2),
                "-".to_string(),
                fmt_f(e.fid, 2),
                format!(
                    "extrapolated, not measured: FID = {} * h^{} fitted to steps {}",
                    fmt_f(e.fit.scale, 2),
                    fmt_f(-e.fit.exponent, 3),
                    steps.join(", ")
                ),
            ]);
        }
        t
    }

    /// Replaces the extrapolated FIDs with the current fit's at each of `hours` past the last
    /// point (none without a fit; hours the curve has reached are measured, not extrapolated).
    pub fn extrapolate(&mut self, hours: &[f64]) {
        let last = self
            .points
            .iter()
            .map(|p| p.train_s / 3600.0)
            .fold(0.0, f64::max);
        self.extrapolated = match PowerLaw::fit(&self.points) {
            Some(fit) => hours
                .iter()
                .filter(|&&h| h > last)
                .map(|&h| Extrapolated {
                    hours: h,
                    fid: fit.at(h),
                    fit: fit.clone(),
                })
                .collect(),
            None => Vec::new(),
        };
    }

    /// FID against training hours (linear axes: the FIDs of one run span a few-fold range).
    pub fn figure(&self) -> Figure {
        let (xs, ys) = self.measured_line();
        let weights = if self.ema { "EMA" } else { "raw" };
        let mut panel = Panel::new(
            format!("FID ({} samples, {weights}) against training time", self.n),
            "training time (h)",
            "FID",
        )
        .with(Series::new(self.samples_tag.clone(), xs, ys));
        if let Some((xs, ys)) = self.extrapolation_line() {
            panel = panel.with(Series::new("extrapolated (power law)", xs, ys));
        }
        Figure::new(vec![panel])
    }

    /// The measured points as training hours and FIDs.
    pub fn measured_line(&self) -> (Vec<f64>, Vec<f64>) {
        let xs = self.points.iter().map(|p| p.train_s / 3600.0).collect();
        let ys = self.points.iter().map(|p| p.fid).collect();
        (xs, ys)
    }

    /// The fitted power law from the last point to the furthest extrapolated hour, at 25 points
    /// (none without extrapolated FIDs).
    pub fn extrapolation_line(&self) -> Option<(Vec<f64>, Vec<f64>)> {
        let (e, last) = (self.extrapolated.first()?, self.points.last()?);
        let from = last.train_s / 3600.0;
        let to = self
            .extrapolated
            .iter()
            .map(|e| e.hours)
            .fold(from, f64::max);
        let xs: Vec<f64> = (0..=24)
            .map(|i| from + (to - from) * i as f64 / 24.0)
            .collect();
        let ys = xs.iter().map(|&h| e.fit.at(h)).collect();
        Some((xs, ys))
    }

    /// The curve's files in `out`: `TAG.json` (TAG the samples' file name stem).
    pub fn path(&self, out: &Path, ext: &str) -> PathBuf {
        out.join(format!("{}.{ext}", self.samples_tag))
    }

    /// This (empty) curve with the points of the one already in `out` for the same samples, so
    /// that evaluating more checkpoints adds to it; a curve there against another reference is
    /// an error rather than overwritten.
    pub fn merged_with_existing(mut self, out: &Path) -> Result<Self> {
        let path = self.path(out, "json");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(self),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let old: Curve = serde_json::from_str(&text).map_err(|e| {
            Error::Invalid(format!(
                "{}: not a curve daed wrote ({e}); move it away or pass another --out",
                path.display()
            ))
        })?;
        if (&old.run, &old.reference, old.n, old.ema)
            != (&self.run, &self.reference, self.n, self.ema)
        {
            return Err(Error::Invalid(format!(
                "{} holds the curve of {} against `{}`; pass another --out to keep it",
                path.display(),
                old.run.display(),
                old.reference,
            )));
        }
        self.points = old.points;
        Ok(self)
    }

    /// Writes `TAG.json`, `.csv`, `.md` and `.png` into `out`; returns the paths.
    pub fn write(&self, out: &Path) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        let p = |ext: &str| self.path(out, ext);
        write_json(p("json"), self)?;
        let t = self.table();
        t.write_csv(p("csv"))?;
        t.write_markdown(p("md"))?;
        self.figure().save_png(p("png"))?;
        Ok(vec![p("json"), p("csv"), p("md"), p("png")])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(step: u64, rate: f64, loss: f64) -> String {
        format!(r#"{{"step":{step},"steps_per_sec":{rate},"loss":{loss},"elapsed_s":1.0}}"#)
    }

    #[test]
    fn the_clock_sums_windows_and_interpolates_inside_one() {
        // Steps 1-50 at 2 steps/s (25 s), 51-100 at 1 step/s (50 s), 101-120 at 4 steps/s (5 s).
        let text = [line(50, 2.0, 0.3), line(100, 1.0, 0.2), line(120, 4.0, 0.1)].join("\n");
        let c = TrainingClock::parse(&text, Path::new("log.jsonl")).unwrap();
        assert_eq!(c.last_step(), 120);
        let at = |s| c.at(s).map(|r| (r.secs, r.loss, r.estimated_steps));
        assert_eq!(at(50), Some((25.0, Some(0.3), 0)));
        assert_eq!(at(100), Some((75.0, Some(0.2), 0)));
        assert_eq!(at(120), Some((80.0, Some(0.1), 0)));
        // Step 60 is 10 steps into the second window: 25 + 10 s.
        assert_eq!(at(60), Some((35.0, Some(0.2), 0)));
        assert_eq!(at(121), None);
    }

    #[test]
    fn a_bad_log_line_is_an_error_naming_the_file_and_line() {
        let p = Path::new("/r/log.jsonl");
        for (text, what) in [
            (
                format!("not json\n{}", r#"{"step":5}"#),
                "line 2: no positive `steps_per_sec`",
            ),
            (
                format!("{}\n{}", line(50, 2.0, 0.3), line(50, 2.0, 0.3)),
                "line 2: step 50 does not follow step 50",
            ),
        ] {
            let e = TrainingClock::parse(&text, p).unwrap_err().to_string();
            assert!(e.contains("/r/log.jsonl") && e.contains(what), "{e}");
        }
    }

    #[test]
    fn file_tags_name_every_choice_that_changes_the_images() {
        let base = SampleOptions::from_flags(Some(50), true, 0.0, 3).unwrap();
        assert_eq!(base.file_tag(5000, true), "n5000_ddim50_seed3");
        let tag = |o: &SampleOptions| o.file_tag(5000, true);
        let mut variants = vec![
            base.file_tag(5000, false),
            base.file_tag(64, true),
            tag(&SampleOptions::from_flags(Some(50), true, 0.5, 3).unwrap()),
            tag(&SampleOptions::from_flags(Some(50), false, 0.0, 3).unwrap()),
            tag(&SampleOptions::from_flags(Some(20), true, 0.0, 3).unwrap()),
            tag(&SampleOptions::from_flags(Some(50), true, 0.0, 4).unwrap()),
        ];
        let mut class = base.clone();
        class.class = Some(7);
        variants.push(tag(&class));
        let mut bf16 = base.clone();
        bf16.precision = crate::precision::PrecisionChoice::Bf16;
        variants.push(tag(&bf16));
        assert_eq!(variants[0], "n5000_ddim50_seed3_raw");
        assert_eq!(variants[2], "n5000_ddim50_eta0.5_seed3");
        variants.push(tag(&base));
        let all = variants.len();
        variants.sort();
        variants.dedup();
        assert_eq!(variants.len(), all, "{variants:?}");
    }

    #[test]
    fn steps_no_line_timed_are_estimated_at_the_next_rate() {
        // Resumed from step 75 while lines stop at 50: steps 51-75 were not timed; the window
        // ending at 100 timed 25 steps at 1 step/s.
        let text = [
            line(50, 2.0, 0.3),
            r#"{"step":100,"steps_per_sec":1.0,"window":25,"loss":0.2}"#.to_string(),
            "{\"step\":1".to_string(),
        ]
        .join("\n");
        let c = TrainingClock::parse(&text, Path::new("log.jsonl")).unwrap();
        let at = c.at(75).unwrap();
        assert_eq!((at.secs, at.estimated_steps), (50.0, 25));
        assert_eq!(c.at(50).unwrap().estimated_steps, 0);
        assert_eq!(c.last_step(), 100);
    }

    fn point(step: u64, hours: f64, fid: f64) -> CurvePoint {
        CurvePoint {
            step,
            train_s: hours * 3600.0,
            estimated_steps: 0,
            loss: None,
            fid,
            samples: PathBuf::from("s.npz"),
            sample_s: 0.0,
        }
    }

    #[test]
    fn the_power_law_fits_the_later_half_and_says_so() {
        // FID = 60 h^-0.5 from 1 h on; the point at 0.4 h is off the law and left out.
        let law = |h: f64| 60.0 * h.powf(-0.5);
        let pts = vec![
            point(100, 0.4, 500.0),
            point(250, 1.0, law(1.0)),
            point(500, 2.0, law(2.0)),
            point(1000, 4.0, law(4.0)),
        ];
        let fit = PowerLaw::fit(&pts).unwrap();
        assert!((fit.scale - 60.0).abs() < 1e-9 && (fit.exponent - 0.5).abs() < 1e-12);
        assert_eq!(fit.fitted_to, vec![500, 1000]);
        assert!((fit.at(16.0) - 15.0).abs() < 1e-9);
        // One point in the later half, or none at all: no fit.
        assert_eq!(PowerLaw::fit(&pts[..2]), None);
        assert_eq!(PowerLaw::fit(&[]), None);

        let mut curve = Curve {
            run: PathBuf::from("run"),
            n: 10,
            reference: "r".into(),
            ema: true,
            samples_tag: "t".into(),
            points: pts,
            extrapolated: Vec::new(),
        };
        curve.extrapolate(&[3.0, 8.0]);
        assert_eq!(
            curve.extrapolated.len(),
            1,
            "3 hours were reached: not extrapolated"
        );
        assert!((curve.extrapolated[0].fid - law(8.0)).abs() < 1e-9);
        let md = curve.table().to_markdown();
        assert!(
            md.contains(
                "extrapolated, not measured: FID = 60.00 * h^-0.500 fitted to steps 500, 1000"
            ),
            "{md}"
        );
        assert_eq!(curve.figure().panels[0].series.len(), 2);
        curve.points.truncate(1);
        curve.extrapolate(&[8.0]);
        assert!(curve.extrapolated.is_empty());
        assert_eq!(curve.figure().panels[0].series.len(), 1);
    }
}
