//! The training loop: batches, steps, losses, AdamW, EMA, logs, grids and checkpoints.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::{Device, Tensor, TensorData};
use daed_io::images::ImageSet;

use super::checkpoint::{self, Checkpoint, CheckpointState, TensorFile, FORMAT_VERSION};
use super::optim::{ema_update, AdamW, AdamWSettings};
use super::parallel::{self, StepBatch};
use crate::config::{DaedMode, ExperimentConfig, ModelKind};
use crate::diffusion::step_sampler::StepSampler;
use crate::diffusion::GaussianDiffusion;
use crate::model::DiffusionNet;
use crate::nn::UNet;
use crate::precision::Precision;
use crate::rng::{Rng, Stream};
use crate::sample::{noise, SampleOptions};
use crate::tensor_io::{load_module, module_arrays, to_vec};
use crate::{Error, Result};

/// Receives progress from the loop (the CLI draws a progress bar with it).
pub trait Observer {
    /// Training starts at `step` of `total`.
    fn start(&mut self, _step: u64, _total: u64) {}
    /// A step finished with this loss.
    fn step(&mut self, _step: u64, _loss: f64) {}
    /// Something worth telling the user (checkpoint written, grid written).
    fn message(&mut self, _msg: &str) {}
    /// Whether the user asked training to stop (a signal): checked after every step, and
    /// answered by a checkpoint at that step.
    fn stop_requested(&self) -> bool {
        false
    }
}

/// An observer that ignores everything.
pub struct Quiet;
impl Observer for Quiet {}

/// What one step measured.
#[derive(Clone, Debug, Default)]
pub struct StepStats {
    /// The weighted mean loss that was minimised.
    pub loss: f64,
    /// Mean epsilon MSE (when part of the objective).
    pub mse: Option<f64>,
    /// Mean VLB term in bits/dim (when computed).
    pub vb: Option<f64>,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Weighted per-sample losses, summed and counted per quarter of the steps.
    pub quartiles: [(f64, usize); 4],
}

/// Loads the dataset a config names.
pub fn load_data(cfg: &ExperimentConfig) -> Result<ImageSet> {
    let d = &cfg.data;
    let mut spec = daed_io::datasets::DatasetSpec::new(d.dataset.parse()?);
    spec.split = d.split.parse()?;
    spec.path = d.path.clone();
    spec.celeba_crop = d.celeba_crop;
    spec.limit = d.limit;
    let set = daed_io::datasets::load(&spec)?;
    if set.is_empty() {
        return Err(Error::Invalid(format!(
            "data: dataset `{}` has no images",
            d.dataset
        )));
    }
    Ok(set)
}

/// The autodiff devices that train `cfg`: `train.devices`, or the run's `device` alone.
fn training_devices(cfg: &ExperimentConfig) -> Result<Vec<Device>> {
    cfg.training_device_names()
        .iter()
        .map(|n| match crate::device::resolve(n) {
            Ok(d) => Ok(d.autodiff()),
            Err(e) if !cfg.train.devices.is_empty() => {
                Err(Error::Invalid(format!("train.devices: {e}")))
            }
            Err(e) => Err(e),
        })
        .collect()
}

/// A training run in progress.
pub struct Trainer<M: DiffusionNet = UNet> {
    /// The experiment.
    pub cfg: ExperimentConfig,
    /// Where logs, grids and checkpoints go.
    pub run_dir: PathBuf,
    /// The model (on the autodiff device).
    pub model: M,
    /// The EMA of the model's weights (plain device).
    pub ema: M,
    /// The diffusion process.
    pub diffusion: GaussianDiffusion,
    /// Optimiser steps done.
    pub step: u64,
    /// The devices sharing each batch (autodiff); the first holds the weights.
    devices: Vec<Device>,
    /// The arithmetic of the training steps (`train.precision` resolved on the devices).
    precision: Precision,
    opt: AdamW,
    sampler: StepSampler,
    data: ImageSet,
    perm: Option<(u64, Vec<usize>)>,
}

impl<M: DiffusionNet> Trainer<M> {
    /// A fresh run of `cfg` on `data`.
    pub fn new(cfg: ExperimentConfig, data: ImageSet) -> Result<Self> {
        cfg.validate()?;
        let devices = training_devices(&cfg)?;
        let device = &devices[0];
        if cfg.model != M::KIND {
            return Err(Error::Invalid(format!(
                "the config trains a `{}` model, not `{}`",
                cfg.model,
                M::KIND
            )));
        }
        let frozen_generator = cfg.model == ModelKind::Daed && cfg.daed.mode == DaedMode::TwoStage;
        if let (Some(n), false) = (cfg.unet.num_classes, frozen_generator) {
            return Err(Error::Invalid(format!(
                "unet.num_classes = {n}: daed trains unconditional networks only (its data \
                 carries no labels); a class-conditional model can be imported, sampled \
                 (--class) and given a two-stage DAE"
            )));
        }
        let diffusion = M::process(&cfg)?;
        let shape = [data.channels, data.height, data.width];
        // Everything the run will use later is checked now, before any work.
        cfg.validate_for_shape(shape)?;
        M::sampling_process(&diffusion, &cfg.sample.respacing)
            .map_err(|e| Error::Invalid(format!("sample.respacing: {e}")))?;
        crate::memory::check_training(&cfg, shape)?;
        let precision = devices
            .iter()
            .map(|d| cfg.train.precision.resolve("train.precision", d))
            .collect::<Result<Vec<_>>>()?[0];
        cfg.sample.precision.resolve("sample.precision", device)?;
        device.seed(cfg.train.seed);
        let model = M::build(&cfg, &diffusion, shape, device)?.prepare(&cfg, shape)?;
        let ema = model.valid();
        let sampler = StepSampler::new(M::step_sampler(&cfg), &diffusion.betas);
        Ok(Self {
            run_dir: cfg.run_dir(),
            cfg,
            model,
            ema,
            diffusion,
            step: 0,
            devices,
            precision,
            opt: AdamW::default(),
            sampler,
            data,
            perm: None,
        })
    }

    /// Continues from a checkpoint (a checkpoint dir or a run dir's latest). The data, diffusion
    /// and network sections of `cfg` must equal the checkpoint's; the others may change.
    pub fn resume(cfg: ExperimentConfig, data: ImageSet, path: &Path) -> Result<Self> {
        let ck = Checkpoint::open(path)?;
        match ck.config.run_difference(&cfg) {
            None => {}
            Some("model") => {
                return Err(Error::ckpt(
                    &ck.dir,
                    "the config's model or [daed] section differs from the checkpoint's",
                ))
            }
            Some(name) => {
                return Err(Error::ckpt(&ck.dir, format!("the config's [{name}] differs from the checkpoint's: resume with the run's own config (saved as {})", ck.dir.join("state.json").display())));
            }
        }
        let mut t = Self::new(cfg, data)?;
        refuse_newer_checkpoints(&t.run_dir, ck.state.step)?;
        let shape = [t.data.channels, t.data.height, t.data.width];
        if ck.state.image_shape != shape {
            return Err(Error::ckpt(
                &ck.dir,
                format!(
                    "made for images {:?}, the data has {:?}",
                    ck.state.image_shape, shape
                ),
            ));
        }
        let path = |f: TensorFile| ck.dir.join(f.name());
        let model = ck.tensors(TensorFile::Model)?;
        t.model = load_module(t.model, &model, "", &path(TensorFile::Model))?;
        let ema = ck.tensors(TensorFile::Ema)?;
        t.ema = load_module(t.ema, &ema, "", &path(TensorFile::Ema))?;
        let opt = ck.tensors(TensorFile::Optimizer)?;
        t.opt = AdamW::from_arrays(ck.state.adam_t, &opt, &t.device().clone().inner());
        t.opt.check(&t.model, &path(TensorFile::Optimizer))?;
        let sampler = &ck.state.step_sampler;
        if sampler.kind != t.sampler.kind {
            return Err(Error::ckpt(
                &ck.dir,
                "its step sampler differs from the config's [diffusion] step_sampler",
            ));
        }
        sampler
            .check(t.diffusion.num_steps())
            .map_err(|m| Error::ckpt(&ck.dir, m))?;
        t.sampler = sampler.clone();
        t.step = ck.state.step;
        Ok(t)
    }

    fn batch_indices(&mut self) -> Vec<usize> {
        let n = self.data.len() as u64;
        let b = self.cfg.train.batch_size as u64;
        (0..b)
            .map(|j| {
                let pos = self.step * b + j;
                let epoch = pos / n;
                if self.perm.as_ref().is_none_or(|(e, _)| *e != epoch) {
                    let mut p: Vec<usize> = (0..n as usize).collect();
                    Rng::stream(self.cfg.train.seed, Stream::Shuffle { epoch }).shuffle(&mut p);
                    self.perm = Some((epoch, p));
                }
                self.perm.as_ref().expect("set above").1[(pos % n) as usize]
            })
            .collect()
    }

    /// The arithmetic of the training steps (`train.precision` resolved).
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The device that holds the weights, the optimiser and the EMA.
    fn device(&self) -> &Device {
        &self.devices[0]
    }

    /// Current learning rate (with `lr_anneal`, linear to 0 at `steps` over the last
    /// `lr_anneal_last` steps, or over all of them).
    pub fn lr(&self) -> f64 {
        let t = &self.cfg.train;
        let span = match t.lr_anneal_last {
            0 => t.steps,
            n => n.min(t.steps),
        };
        let start = t.steps - span;
        if !t.lr_anneal || self.step < start {
            return t.lr;
        }
        t.lr * (1.0 - (self.step - start) as f64 / span.max(1) as f64).max(0.0)
    }

    /// One optimiser step.
    pub fn train_step(&mut self) -> Result<StepStats> {
        let seed = self.cfg.train.seed;
        let idx = self.batch_indices();
        let b = idx.len();
        let [c, h, w] = [self.data.channels, self.data.height, self.data.width];
        let (ts, ws) = self.sampler.sample(
            b,
            &mut Rng::stream(seed, Stream::Timesteps { step: self.step }),
        );
        // Sorted by step, so a model with several networks (DAED) can split the batch.
        let mut order: Vec<usize> = (0..b).collect();
        order.sort_by_key(|&i| ts[i]);
        let idx: Vec<usize> = order.iter().map(|&i| idx[i]).collect();
        let ts: Vec<usize> = order.iter().map(|&i| ts[i]).collect();
        let ws: Vec<f64> = order.iter().map(|&i| ws[i]).collect();
        let x0: Tensor<4> = Tensor::from_data(
            TensorData::new(self.data.to_f32(&idx), [b, c, h, w]),
            self.device(),
        );
        // The noise from the device generator seeded for this step; dropout keyed per sample.
        let eps = noise(
            [b, c, h, w],
            seed,
            Stream::TrainNoise { step: self.step },
            self.device(),
        );
        let batch = StepBatch {
            x0,
            eps,
            ts: &ts,
            ws: &ws,
            seed,
            step: self.step,
            precision: self.precision,
        };
        let out = parallel::gradients(
            &self.model,
            &self.cfg,
            &self.diffusion,
            &batch,
            &self.devices,
        )?;
        let (host, raw, mse, vb) = (out.weighted, out.raw, out.mse, out.vb);
        let grads = out.grads.expect("the batch has rows");
        let lr = self.lr();
        let settings = AdamWSettings {
            lr,
            weight_decay: self.cfg.train.weight_decay,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            grad_clip: (self.cfg.train.grad_clip > 0.0).then_some(self.cfg.train.grad_clip),
        };
        // Modules update by value; a clone shares the tensors, so it costs nothing.
        let (model, grad_norm) = self.opt.step(self.model.clone(), &grads, &settings, lr)?;
        self.model = model;
        self.ema = ema_update(self.ema.clone(), &self.model, self.cfg.train.ema_rate);
        self.step += 1;

        self.sampler
            .update(&ts, &raw.iter().map(|&x| x as f64).collect::<Vec<_>>());
        let mut quartiles = [(0.0, 0); 4];
        let tn = self.diffusion.num_steps();
        for (&t, &l) in ts.iter().zip(&host) {
            let q = (4 * t / tn).min(3);
            quartiles[q].0 += l as f64;
            quartiles[q].1 += 1;
        }
        // A term is reported only when every sample of the batch has it.
        let mean =
            |v: &[f32]| (v.len() == b).then(|| v.iter().map(|&x| x as f64).sum::<f64>() / b as f64);
        Ok(StepStats {
            loss: host.iter().map(|&x| x as f64).sum::<f64>() / b as f64,
            mse: mean(&mse),
            vb: mean(&vb),
            grad_norm,
            lr,
            quartiles,
        })
    }

    /// The error for a step whose loss or gradient is not finite; names the last checkpoint,
    /// which holds finite weights (checkpoints with non-finite weights are never written).
    fn diverged(&self, s: &StepStats) -> Error {
        let last = checkpoint::list(&self.run_dir)
            .ok()
            .and_then(|v| v.last().cloned())
            .map(|p| format!("the last checkpoint, {}, is intact", p.display()))
            .unwrap_or_else(|| "no checkpoint was written".into());
        Error::Invalid(format!(
            "training diverged at step {}: loss {}, gradient norm {} (lr {}): lower train.lr or \
             set train.grad_clip; {last}",
            self.step, s.loss, s.grad_norm, s.lr
        ))
    }

    /// Writes a checkpoint of the current state.
    pub fn save_checkpoint(&self) -> Result<PathBuf> {
        let state = CheckpointState {
            format_version: FORMAT_VERSION,
            step: self.step,
            model_kind: M::KIND.to_string(),
            image_shape: [self.data.channels, self.data.height, self.data.width],
            config_toml: self.cfg.to_toml(),
            seed: self.cfg.train.seed,
            adam_t: self.opt.t,
            step_sampler: self.sampler.clone(),
            checksums: Default::default(),
        };
        let tensors = [
            module_arrays(&self.model, "")?,
            module_arrays(&self.ema, "")?,
            self.opt.arrays()?,
        ];
        checkpoint::save(
            &self.run_dir,
            state,
            tensors,
            self.cfg.train.keep_checkpoints,
        )
    }

    /// Samples a grid from the EMA weights into `samples/step_N.png`.
    pub fn write_grid(&self) -> Result<PathBuf> {
        let s = &self.cfg.sample;
        let n = s.n.min(64);
        let mut opts = SampleOptions::from_config(s)?;
        // A class-conditional generator (two-stage DAE over it) draws its grid for class 0.
        opts.class = self.ema.num_classes().map(|_| 0);
        let shape = [self.data.channels, self.data.height, self.data.width];
        let inner = self.device().clone().inner();
        let imgs = self.ema.sample(
            &self.diffusion,
            shape,
            n,
            s.batch_size,
            &opts,
            &inner,
            &mut |_, _| {},
        )?;
        let set = ImageSet::from_f32(shape[0], shape[1], shape[2], &imgs);
        let path = self
            .run_dir
            .join("samples")
            .join(format!("step_{:08}.png", self.step));
        save_grid(&path, &set)?;
        Ok(path)
    }

    /// Appends the model's VLB terms at log-spaced steps on a fixed batch (fixed noise) to
    /// `dynamics.jsonl` (one line per call).
    pub fn record_dynamics(&self) -> Result<()> {
        let t = &self.cfg.train;
        let tn = self.diffusion.num_steps();
        let steps = dynamics_steps(tn, t.dynamics_points);
        let b = t.dynamics_batch.min(self.data.len()).max(1);
        let [c, h, w] = [self.data.channels, self.data.height, self.data.width];
        let inner = self.device().clone().inner();
        let idx: Vec<usize> = (0..b).collect();
        let x0: Tensor<4> = Tensor::from_data(
            TensorData::new(self.data.to_f32(&idx), [b, c, h, w]),
            &inner,
        );
        let model = self.model.valid();
        let mut vals = Vec::new();
        for &s in &steps {
            let eps = noise(
                [b, c, h, w],
                t.seed,
                Stream::DynamicsNoise { t: s as u64 },
                &inner,
            );
            match model.vlb_probe(&self.diffusion, x0.clone(), &vec![s - 1; b], eps) {
                Some(v) => vals.push(to_vec(v.mean())?[0] as f64),
                None => return Ok(()),
            }
        }
        let record = super::dynamics::Record {
            t: steps,
            train_step: self.step,
            vlb_bpd: vals,
        };
        super::dynamics::append(&self.run_dir, &record)
    }

    /// Trains until `train.steps`, logging, sampling and checkpointing on the way. The run
    /// directory is locked meanwhile: a second process writing to it is refused.
    pub fn run(&mut self, obs: &mut dyn Observer) -> Result<()> {
        std::fs::create_dir_all(&self.run_dir).map_err(|e| Error::io(&self.run_dir, e))?;
        let _lock = RunLock::acquire(&self.run_dir)?;
        daed_io::atomic::write_atomic(
            self.run_dir.join("config.toml"),
            self.cfg.to_toml().as_bytes(),
        )?;
        for dir in run_temp_dirs(&self.run_dir) {
            daed_io::atomic::remove_stale_temps(&dir)?;
        }
        let log_path = self.run_dir.join("log.jsonl");
        rewind_jsonl(&log_path, "step", self.step)?;
        rewind_jsonl(
            &self.run_dir.join(super::dynamics::FILE),
            "train_step",
            self.step,
        )?;
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| Error::io(&log_path, e))?;
        let t = self.cfg.train.clone();
        obs.start(self.step, t.steps);
        let mut acc: Vec<StepStats> = Vec::new();
        let mut tick = Instant::now();
        let started = Instant::now();
        while self.step < t.steps {
            let s = self.train_step()?;
            if !(s.loss.is_finite() && s.grad_norm.is_finite()) {
                return Err(self.diverged(&s));
            }
            obs.step(self.step, s.loss);
            acc.push(s);
            // A stop asked for (a signal) ends the log window and writes a checkpoint here.
            let stop = obs.stop_requested();
            let last = self.step == t.steps;
            if self.step.is_multiple_of(t.log_every) || last || stop {
                let dt = tick.elapsed().as_secs_f64();
                let line = log_line(self.step, &acc, dt, started.elapsed().as_secs_f64());
                writeln!(log, "{line}").map_err(|e| Error::io(&log_path, e))?;
                acc.clear();
                tick = Instant::now();
            }
            // Records and grids before the checkpoint: a run killed in between redoes them.
            if t.dynamics_every > 0
                && (self.step.is_multiple_of(t.dynamics_every) || self.step == 1)
            {
                self.record_dynamics()?;
            }
            if (t.sample_every > 0 && self.step.is_multiple_of(t.sample_every)) || last {
                let p = self.write_grid()?;
                obs.message(&format!("samples {}", p.display()));
            }
            if self.step.is_multiple_of(t.checkpoint_every) || last || stop {
                let p = self.save_checkpoint()?;
                obs.message(&format!("checkpoint {}", p.display()));
            }
            if stop {
                obs.message(&format!("stopped at step {} as asked", self.step));
                break;
            }
        }
        Ok(())
    }
}

/// An exclusive lock on a run directory (`RUN/.lock`), held by a training process and by
/// `daed doctor --repair`; released when dropped (or when the process dies).
pub struct RunLock {
    _file: std::fs::File,
}

impl RunLock {
    /// Takes the lock, or says which directory another daed process is writing to.
    pub fn acquire(run_dir: &Path) -> Result<Self> {
        let busy = "another daed process is writing to this run directory (it holds .lock); wait \
                    for it to finish";
        Ok(Self {
            _file: daed_io::atomic::lock_dir(run_dir, busy)?,
        })
    }
}

/// The folders of a run where daed writes through temporary files (`NAME.tmp-PID`).
pub fn run_temp_dirs(run_dir: &Path) -> [PathBuf; 3] {
    [
        run_dir.to_path_buf(),
        run_dir.join("checkpoints"),
        run_dir.join("samples"),
    ]
}

/// A run resumed from step `from` writes its checkpoints from `from + 1` on: refuses when the run
/// directory already holds a newer checkpoint, which the resumed run would overwrite or prune.
fn refuse_newer_checkpoints(run_dir: &Path, from: u64) -> Result<()> {
    let newer: Vec<String> = checkpoint::list(run_dir)?
        .iter()
        .filter(|p| checkpoint::step_of(p).is_some_and(|s| s > from))
        .filter(|p| p.join("state.json").is_file())
        .filter_map(|p| Some(p.file_name()?.to_string_lossy().into_owned()))
        .collect();
    if newer.is_empty() {
        return Ok(());
    }
    Err(Error::ckpt(
        run_dir,
        format!(
            "holds checkpoints newer than step {from} ({}): resuming from step {from} here would \
             replace them; continue in a new run directory with --out DIR, or resume from the \
             newest with --resume latest",
            newer.join(", ")
        ),
    ))
}

/// The integer field `key` of one JSONL line (`None` when the line does not parse or lacks it).
pub(crate) fn jsonl_step(line: &str, key: &str) -> Option<u64> {
    serde_json::from_str::<serde_json::Value>(line)
        .ok()?
        .get(key)?
        .as_u64()
}

/// Keeps the lines of a JSONL log whose `key` is at most `step` (what a run resumed from `step`
/// writes again after them); lines that do not parse (a write cut by a kill) are dropped.
fn rewind_jsonl(path: &Path, key: &str, step: u64) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: String = text
        .lines()
        .filter(|l| jsonl_step(l, key).is_some_and(|s| s <= step))
        .map(|l| format!("{l}\n"))
        .collect();
    if kept.len() != text.len() {
        daed_io::atomic::write_atomic(path, kept.as_bytes())?;
    }
    Ok(())
}

/// `points` log-spaced steps from 1 to `total` (1-based, distinct, ascending).
pub fn dynamics_steps(total: usize, points: usize) -> Vec<usize> {
    let p = points.max(2);
    let mut v: Vec<usize> = (0..p)
        .map(|i| ((total as f64).powf(i as f64 / (p - 1) as f64)).round() as usize)
        .map(|s| s.clamp(1, total))
        .collect();
    v.dedup();
    v
}

/// Saves a square-ish grid, upscaled 2x for images of 32 px or less so they are easy to see.
pub fn save_grid(path: &Path, set: &ImageSet) -> Result<()> {
    let ncol = (set.len() as f64).sqrt().ceil() as usize;
    let mut cv = daed_io::grid::grid_image(set, ncol.max(1), 2)?;
    if set.height <= 32 {
        cv = daed_io::grid::upscale(&cv, 2);
    }
    cv.save_png(path)?;
    Ok(())
}

fn log_line(step: u64, acc: &[StepStats], dt: f64, elapsed: f64) -> String {
    let n = acc.len().max(1) as f64;
    let mut o = serde_json::Map::new();
    o.insert("step".into(), step.into());
    o.insert(
        "loss".into(),
        (acc.iter().map(|s| s.loss).sum::<f64>() / n).into(),
    );
    for (key, get) in [
        (
            "mse",
            (|s: &StepStats| s.mse) as fn(&StepStats) -> Option<f64>,
        ),
        ("vb", |s: &StepStats| s.vb),
    ] {
        let v: Vec<f64> = acc.iter().filter_map(get).collect();
        if !v.is_empty() {
            o.insert(key.into(), (v.iter().sum::<f64>() / v.len() as f64).into());
        }
    }
    for q in 0..4 {
        let (s, c) = acc.iter().fold((0.0, 0), |(s, c), x| {
            (s + x.quartiles[q].0, c + x.quartiles[q].1)
        });
        if c > 0 {
            o.insert(format!("loss_q{q}"), (s / c as f64).into());
        }
    }
    o.insert(
        "grad_norm".into(),
        (acc.iter().map(|s| s.grad_norm).sum::<f64>() / n).into(),
    );
    o.insert("lr".into(), acc.last().map(|s| s.lr).unwrap_or(0.0).into());
    o.insert(
        "steps_per_sec".into(),
        (acc.len() as f64 / dt.max(1e-9)).into(),
    );
    // The steps this line covers: a resumed run's first window starts at its checkpoint.
    o.insert("window".into(), acc.len().into());
    o.insert("elapsed_s".into(), elapsed.into());
    serde_json::Value::Object(o).to_string()
}
