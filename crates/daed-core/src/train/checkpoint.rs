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
    /// The RNG state: every draw is keyed by (seed, step), so the seed is the state.
    pub seed: u64,
    /// AdamW's update count.
    pub adam_t: u64,
    /// The step sampler (its loss history for loss-second-moment).
    pub step_sampler: StepSampler,
    /// SHA-256 of each tensor file.
    pub checksums: BTreeMap<String, String>,
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

fn sha256_hex(b: &[u8]) -> String {
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

/// Names of the tensor files.
pub const FILES: [&str; 3] = [
    "model.safetensors",
    "ema.safetensors",
    "optimizer.safetensors",
];

/// Writes a checkpoint for `state.step` under `run_dir/checkpoints/`, keeps the newest `keep`
/// (0 = all), and points `latest` at it. `tensors` holds the three files' arrays.
pub fn save(
    run_dir: &Path,
    mut state: CheckpointState,
    tensors: [BTreeMap<String, NamedArray>; 3],
    keep: usize,
) -> Result<PathBuf> {
    let root = run_dir.join("checkpoints");
    std::fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
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
    for (file, arrays) in FILES.iter().zip(tensors.iter()) {
        let bytes = safetensors_bytes(arrays, &meta);
        state.checksums.insert(file.to_string(), sha256_hex(&bytes));
        write_synced(&tmp.join(file), &bytes)?;
    }
    let json = serde_json::to_vec_pretty(&state).expect("state serialises");
    write_synced(&tmp.join("state.json"), &json)?;
    if fin.exists() {
        std::fs::remove_dir_all(&fin).map_err(|e| Error::io(&fin, e))?;
    }
    std::fs::rename(&tmp, &fin).map_err(|e| Error::io(&fin, e))?;
    daed_io::atomic::write_atomic(root.join("latest"), name.as_bytes())?;
    if keep > 0 {
        let mut all = list(run_dir)?;
        all.sort();
        let n = all.len();
        for old in all.into_iter().take(n.saturating_sub(keep)) {
            let _ = std::fs::remove_dir_all(old);
        }
    }
    Ok(fin)
}

/// Checkpoint directories of a run, oldest first.
pub fn list(run_dir: &Path) -> Result<Vec<PathBuf>> {
    let root = run_dir.join("checkpoints");
    let Ok(rd) = std::fs::read_dir(&root) else {
        return Ok(Vec::new());
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("step_"))
        })
        .collect();
    v.sort();
    Ok(v)
}

/// Finds the checkpoint directory for `path`: a checkpoint dir itself, or a run dir (its latest).
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
        if dir.join("state.json").is_file() {
            return Ok(dir);
        }
    }
    list(path)?.pop().ok_or_else(|| {
        Error::ckpt(
            path,
            "not a checkpoint (no state.json) and no checkpoints/ inside",
        )
    })
}

impl Checkpoint {
    /// Opens a checkpoint (or a run's latest) and checks its state file.
    pub fn open(path: &Path) -> Result<Self> {
        let dir = resolve(path)?;
        let sp = dir.join("state.json");
        let bytes = std::fs::read(&sp).map_err(|e| Error::io(&sp, e))?;
        let state: CheckpointState = serde_json::from_slice(&bytes)
            .map_err(|e| Error::ckpt(&sp, format!("bad state.json: {e}")))?;
        if state.format_version != FORMAT_VERSION {
            return Err(Error::ckpt(
                &sp,
                format!(
                    "format version {} (this daed reads {FORMAT_VERSION})",
                    state.format_version
                ),
            ));
        }
        let config = ExperimentConfig::from_toml(&state.config_toml, &sp.display().to_string())?;
        Ok(Self { dir, state, config })
    }

    /// Reads one tensor file, verifying its checksum.
    pub fn tensors(&self, file: &str) -> Result<BTreeMap<String, NamedArray>> {
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
        let file = if ema { FILES[1] } else { FILES[0] };
        let arrays = self.tensors(file)?;
        let net = crate::tensor_io::load_module(net, &arrays, "", &self.dir.join(file))?;
        Ok((net, d))
    }

    /// [`Checkpoint::load_model`] for a DDGM.
    pub fn load_unet(
        &self,
        ema: bool,
        device: &burn::tensor::Device,
    ) -> Result<(crate::nn::UNet, crate::diffusion::GaussianDiffusion)> {
        self.load_model(ema, device)
    }
}
