//! Checkpoints: a directory with model, EMA and optimizer safetensors plus `state.json`.
//!
//! A checkpoint is written into a temporary directory, every file synced, then renamed into
//! place, and `checkpoints/latest` is replaced atomically: a crash leaves the previous one intact.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::ExperimentConfig;
use crate::diffusion::step_sampler::StepSampler;
use crate::tensor_io::{parse_safetensors, safetensors_bytes, NamedArray};
use crate::{Error, Result};

/// Format version written into `state.json`.
pub const FORMAT_VERSION: u32 = 1;

/// The JSON side of a checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckpointState {
    /// Format version.
    pub format_version: u32,
    /// Optimiser steps done.
    pub step: u64,
    /// Kind of model (`ddgm`).
    pub model_kind: String,
    /// Image shape [C, H, W] the model was built for.
    pub image_shape: [usize; 3],
    /// The full experiment config (TOML).
    pub config_toml: String,
    /// The RNG state: every draw is keyed by (seed, step), so the seed is the state (checked
    /// against the config's `train.seed` when read).
    pub seed: u64,
    /// AdamW's update count.
    pub adam_t: u64,
    /// The step sampler (its loss history for loss-second-moment).
    pub step_sampler: StepSampler,
    /// SHA-256 of each tensor file.
    pub checksums: BTreeMap<String, String>,
}

impl CheckpointState {
    /// Parses and checks a `state.json` read from `path` (named in errors); returns the state
    /// and its config.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<(Self, ExperimentConfig)> {
        let state: CheckpointState = serde_json::from_slice(bytes)
            .map_err(|e| Error::ckpt(path, format!("bad state.json: {e}")))?;
        if state.format_version != FORMAT_VERSION {
            return Err(Error::ckpt(
                path,
                format!(
                    "format version {} (this daed reads {FORMAT_VERSION})",
                    state.format_version
                ),
            ));
        }
        let config = ExperimentConfig::from_toml(&state.config_toml, &path.display().to_string())?;
        if state.model_kind != config.model.to_string() {
            return Err(Error::ckpt(
                path,
                format!(
                    "model_kind `{}` disagrees with its config's model `{}`",
                    state.model_kind, config.model
                ),
            ));
        }
        if state.seed != config.train.seed {
            return Err(Error::ckpt(
                path,
                format!(
                    "seed {} disagrees with its config's train.seed {}",
                    state.seed, config.train.seed
                ),
            ));
        }
        check_image_shape(state.image_shape).map_err(|m| Error::ckpt(path, m))?;
        Ok((state, config))
    }
}

/// A loaded checkpoint.
pub struct Checkpoint {
    /// Its directory.
    pub dir: PathBuf,
    /// The JSON state.
    pub state: CheckpointState,
    /// The parsed config.
    pub config: ExperimentConfig,
}

pub use crate::config::{check_image_shape, MAX_IMAGE_SIDE};

/// SHA-256 of `b` as lower-case hex.
pub fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    f.write_all(bytes).map_err(|e| Error::io(path, e))?;
    f.sync_all().map_err(|e| Error::io(path, e))
}

/// The tensor files of a checkpoint, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorFile {
    /// The raw weights.
    Model,
    /// The EMA of the weights.
    Ema,
    /// AdamW's moments.
    Optimizer,
}

impl TensorFile {
    /// All three, in the order they are written.
    pub const ALL: [TensorFile; 3] = [TensorFile::Model, TensorFile::Ema, TensorFile::Optimizer];

    /// The file name inside a checkpoint directory.
    pub fn name(self) -> &'static str {
        match self {
            TensorFile::Model => "model.safetensors",
            TensorFile::Ema => "ema.safetensors",
            TensorFile::Optimizer => "optimizer.safetensors",
        }
    }

    /// The weights for inference: the EMA or the raw ones.
    pub fn weights(ema: bool) -> Self {
        if ema {
            TensorFile::Ema
        } else {
            TensorFile::Model
        }
    }
}

/// The first non-finite value among `arrays`, as (tensor name, index).
pub fn first_non_finite(arrays: &BTreeMap<String, NamedArray>) -> Option<(&str, usize)> {
    arrays.iter().find_map(|(name, a)| {
        a.data
            .iter()
            .position(|v| !v.is_finite())
            .map(|i| (name.as_str(), i))
    })
}

/// The step of a checkpoint directory name (`step_00000040` -> 40).
pub fn step_of(dir: &Path) -> Option<u64> {
    dir.file_name()?
        .to_str()?
        .strip_prefix("step_")?
        .parse()
        .ok()
}

/// Writes a checkpoint for `state.step` under `run_dir/checkpoints/`, points `latest` at it and,
/// with `keep > 0`, removes all but the newest `keep` checkpoints up to this step (a newer one is
/// never touched). Weights that are not finite are refused: such a checkpoint is never written.
/// Temporary folders left by killed writes are cleaned first.
pub fn save(
    run_dir: &Path,
    mut state: CheckpointState,
    tensors: [BTreeMap<String, NamedArray>; 3],
    keep: usize,
) -> Result<PathBuf> {
    for (file, arrays) in TensorFile::ALL.iter().zip(tensors.iter()) {
        if let Some((name, i)) = first_non_finite(arrays) {
            return Err(Error::Invalid(format!(
                "training diverged: at step {} the {} value `{name}`[{i}] is not finite, so no \
                 checkpoint was written (the earlier ones are intact); lower train.lr or set \
                 train.grad_clip",
                state.step,
                file.name()
            )));
        }
    }
    let root = run_dir.join("checkpoints");
    std::fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
    daed_io::atomic::remove_stale_temps(&root)?;
    let name = format!("step_{:08}", state.step);
    let fin = root.join(&name);
    let tmp = root.join(format!(".{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let mut meta = BTreeMap::new();
    meta.insert("step".to_string(), state.step.to_string());
    meta.insert("format".to_string(), "daed".to_string());
    for (file, arrays) in TensorFile::ALL.iter().zip(tensors.iter()) {
        let bytes = safetensors_bytes(arrays, &meta);
        state
            .checksums
            .insert(file.name().to_string(), sha256_hex(&bytes));
        write_synced(&tmp.join(file.name()), &bytes)?;
    }
    let json = serde_json::to_vec_pretty(&state).expect("state serialises");
    write_synced(&tmp.join("state.json"), &json)?;
    if fin.exists() {
        // The same step written again (a resume redoing it): the same trajectory, replaced.
        remove_checkpoint(&fin)?;
    }
    std::fs::rename(&tmp, &fin).map_err(|e| Error::io(&fin, e))?;
    daed_io::atomic::write_atomic(root.join("latest"), name.as_bytes())?;
    if keep > 0 {
        let upto: Vec<PathBuf> = list(run_dir)?
            .into_iter()
            .filter(|p| step_of(p).is_some_and(|s| s <= state.step))
            .collect();
        let n = upto.len();
        for old in upto.into_iter().take(n.saturating_sub(keep)) {
            remove_checkpoint(&old)?;
        }
    }
    Ok(fin)
}

/// Removes a checkpoint directory as one step: it is renamed to a temporary name first (so a kill
/// during the removal leaves a leftover that the next run cleans, never a half checkpoint).
fn remove_checkpoint(dir: &Path) -> Result<()> {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
    let doomed = dir.with_file_name(format!(
        ".{}.tmp-{}",
        name.unwrap_or_default(),
        std::process::id()
    ));
    std::fs::rename(dir, &doomed).map_err(|e| Error::io(dir, e))?;
    std::fs::remove_dir_all(&doomed).map_err(|e| Error::io(&doomed, e))
}

/// Checkpoint directories of a run (`step_N`, complete or not), oldest first.
pub fn list(run_dir: &Path) -> Result<Vec<PathBuf>> {
    let root = run_dir.join("checkpoints");
    let Ok(rd) = std::fs::read_dir(&root) else {
        return Ok(Vec::new());
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && step_of(p).is_some())
        .collect();
    v.sort_by_key(|p| step_of(p));
    Ok(v)
}

/// Finds the checkpoint directory for `path`: a checkpoint dir itself, or a run dir. For a run
/// dir this is the newest complete checkpoint (one with `state.json`: a checkpoint becomes
/// visible only when complete), which is what `checkpoints/latest` names unless a write was
/// killed between the two; a `latest` that names a missing checkpoint is an error.
pub fn resolve(path: &Path) -> Result<PathBuf> {
    if path.join("state.json").is_file() {
        return Ok(path.to_path_buf());
    }
    if !path.exists() {
        return Err(Error::ckpt(path, "no such file or directory"));
    }
    let latest = path.join("checkpoints").join("latest");
    if let Ok(name) = std::fs::read_to_string(&latest) {
        let dir = path.join("checkpoints").join(name.trim());
        if !dir.join("state.json").is_file() {
            return Err(Error::ckpt(
                &latest,
                format!(
                    "names `{}`, which is not a complete checkpoint; `daed doctor {}` says what \
                     is there, or pass a checkpoint directory itself",
                    name.trim(),
                    path.display()
                ),
            ));
        }
    }
    list(path)?
        .into_iter()
        .rev()
        .find(|d| d.join("state.json").is_file())
        .ok_or_else(|| {
            Error::ckpt(
                path,
                "not a checkpoint (no state.json) and no checkpoints inside (none complete in checkpoints/)",
            )
        })
}

impl Checkpoint {
    /// Opens a checkpoint (or a run's latest) and checks its state file.
    pub fn open(path: &Path) -> Result<Self> {
        let dir = resolve(path)?;
        let sp = dir.join("state.json");
        let bytes = std::fs::read(&sp).map_err(|e| Error::io(&sp, e))?;
        let (state, config) = CheckpointState::parse(&bytes, &sp)?;
        Ok(Self { dir, state, config })
    }

    /// Reads one tensor file, verifying its checksum.
    pub fn tensors(&self, file: TensorFile) -> Result<BTreeMap<String, NamedArray>> {
        let file = file.name();
        let p = self.dir.join(file);
        let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
        if let Some(want) = self.state.checksums.get(file) {
            let got = sha256_hex(&bytes);
            if &got != want {
                return Err(Error::ckpt(&p, format!("checksum mismatch (sha256 {got}, state.json says {want}): the file is corrupt or was changed")));
            }
        }
        Ok(parse_safetensors(&bytes, &p)?.0)
    }
}

impl Checkpoint {
    /// Builds the checkpoint's model on `device` (plain, for inference) with the EMA weights
    /// (`ema = true`) or the raw ones, plus its diffusion process. `M` must match its kind.
    pub fn load_model<M: crate::model::DiffusionNet>(
        &self,
        ema: bool,
        device: &burn::tensor::Device,
    ) -> Result<(M, crate::diffusion::GaussianDiffusion)> {
        let cfg = &self.config;
        if cfg.model != M::KIND {
            return Err(Error::ckpt(
                &self.dir,
                format!("holds a `{}` model, not `{}`", cfg.model, M::KIND),
            ));
        }
        let d = M::process(cfg)?;
        let net = M::build(cfg, &d, self.state.image_shape, device)?.valid();
        let file = TensorFile::weights(ema);
        let arrays = self.tensors(file)?;
        let path = self.dir.join(file.name());
        if let Some((name, i)) = first_non_finite(&arrays) {
            return Err(Error::ckpt(
                &path,
                format!("weight `{name}`[{i}] is not finite: this checkpoint cannot sample"),
            ));
        }
        let net = crate::tensor_io::load_module(net, &arrays, "", &path)?;
        Ok((net, d))
    }

    /// [`Checkpoint::load_model`] for a DDGM, as the analyses use it: unconditional (they have
    /// no labels to give a class-conditional network, which is refused).
    pub fn load_unet(
        &self,
        ema: bool,
        device: &burn::tensor::Device,
    ) -> Result<(crate::nn::UNet, crate::diffusion::GaussianDiffusion)> {
        let (net, d) = self.load_model::<crate::nn::UNet>(ema, device)?;
        if let Some(n) = net.num_classes() {
            return Err(Error::ckpt(
                &self.dir,
                format!(
                    "the model is class-conditional ({n} classes): the analyses run unconditional \
                     models (daed sample --class and daed forward take this one)"
                ),
            ));
        }
        Ok((net, d))
    }
}
