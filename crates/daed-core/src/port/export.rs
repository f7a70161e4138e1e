//! Exporting a daed run to PyTorch: the weights under improved-diffusion's names and shapes as
//! safetensors, and the flags string that builds the same network with the PyTorch code.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::flags::Repo;
use super::names::to_state_dict;
use crate::config::{DaedProcess, ExperimentConfig, ModelKind};
use crate::diffusion::{BetaSchedule, ModelVarType};
use crate::nn::AttentionOrder;
use crate::train::checkpoint::TensorFile;
use crate::train::Checkpoint;
use crate::{Error, Result};

/// What an export wrote.
pub struct Exported {
    /// The safetensors files (one; for DAED the DAE `_part_1` and the generator `_part_2`).
    pub files: Vec<PathBuf>,
    /// The flags file.
    pub flags_file: PathBuf,
    /// The code base whose scripts take the flags.
    pub repo: Repo,
    /// The flags string.
    pub flags: String,
    /// What the flags cannot say (the network is always fully described).
    pub notes: Vec<String>,
}

/// Writes `out` (a `.safetensors` path; for a DAED run `<stem>_part_1.safetensors` and
/// `<stem>_part_2.safetensors` beside it) and `<stem>.flags.txt` from the run's EMA weights
/// (`ema`) or raw ones. Existing files are not overwritten.
pub fn export(ck: &Checkpoint, out: &Path, ema: bool) -> Result<Exported> {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|_| out.extension().is_some_and(|e| e == "safetensors"))
        .ok_or_else(|| {
            Error::Invalid(format!("--out {}: must end in .safetensors", out.display()))
        })?;
    let dir = out.parent().unwrap_or(Path::new("."));
    let (repo, flags, notes) = flags_for(&ck.config, ck.state.image_shape)?;
    let file = TensorFile::weights(ema);
    let arrays = ck.tensors(file)?;
    let parts: Vec<(PathBuf, &str)> = match ck.config.model {
        ModelKind::Ddgm => vec![(out.to_path_buf(), "")],
        ModelKind::Daed => vec![
            (dir.join(format!("{stem}_part_1.safetensors")), "dae."),
            (dir.join(format!("{stem}_part_2.safetensors")), "generator."),
        ],
    };
    let flags_file = dir.join(format!("{stem}.flags.txt"));
    for p in parts.iter().map(|(p, _)| p).chain([&flags_file]) {
        if p.exists() {
            return Err(Error::Invalid(format!(
                "{}: already exists (nothing is overwritten)",
                p.display()
            )));
        }
    }
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    for (path, prefix) in &parts {
        let sd = to_state_dict(&arrays, prefix)?;
        let bytes = crate::tensor_io::safetensors_bytes(&sd, &meta);
        daed_io::atomic::write_atomic(path, &bytes)?;
    }
    daed_io::atomic::write_atomic(&flags_file, format!("{flags}\n").as_bytes())?;
    Ok(Exported {
        files: parts.into_iter().map(|(p, _)| p).collect(),
        flags_file,
        repo,
        flags,
        notes,
    })
}

/// The repo whose scripts can build this network (improved-diffusion when it can, else the
/// paper's guided-diffusion fork) and its flags; notes say what the flags leave out.
pub fn flags_for(cfg: &ExperimentConfig, shape: [usize; 3]) -> Result<(Repo, String, Vec<String>)> {
    let [c, size, _] = shape;
    let u = &cfg.unet;
    let d = &cfg.diffusion;
    let mults = u.mults(size);
    let improved = c == 3
        && Repo::ImprovedDiffusion.default_channel_mult(size) == Some(mults.as_slice())
        && u.num_head_channels.is_none()
        && u.attention_order == AttentionOrder::Legacy
        && (u.num_classes.is_none()
            || (u.num_classes == Some(1000)
                && u.label_conditioning == crate::nn::LabelConditioning::Embedding))
        && cfg.model == ModelKind::Ddgm
        && (d.schedule == BetaSchedule::Cosine || (d.beta_start == 1e-4 && d.beta_end == 0.02))
        && d.scale_betas;
    let repo = if improved {
        Repo::ImprovedDiffusion
    } else {
        Repo::AnalysingDdgm
    };
    if let (Repo::AnalysingDdgm, Some(n), crate::nn::LabelConditioning::Embedding) =
        (repo, u.num_classes, u.label_conditioning)
    {
        return Err(Error::Invalid(format!(
            "a class-conditional network with a learned embedding of {n} classes: \
             improved-diffusion builds only 1000 (with its other defaults), the paper's code only \
             one-hot conditioning"
        )));
    }
    let b = |v: bool| if v { "True" } else { "False" };
    let list = |v: &[usize]| {
        v.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut f = vec![
        format!("--image_size {size}"),
        format!("--num_channels {}", u.model_channels),
        format!("--num_res_blocks {}", u.num_res_blocks),
        format!("--num_heads {}", u.num_heads),
        format!(
            "--num_heads_upsample {}",
            u.num_heads_upsample.map_or(-1, |n| n as i64)
        ),
        format!("--attention_resolutions {}", list(&u.attention_resolutions)),
        format!("--dropout {}", u.dropout),
        format!("--use_scale_shift_norm {}", b(u.use_scale_shift_norm)),
        format!("--learn_sigma {}", b(d.learn_sigma)),
        format!("--class_cond {}", b(u.num_classes.is_some())),
        format!("--diffusion_steps {}", d.steps),
        format!(
            "--use_kl {}",
            b(d.loss == crate::diffusion::loss::LossKind::Vlb)
        ),
        format!("--predict_xstart {}", b(d.predict_xstart)),
        format!("--rescale_timesteps {}", b(d.rescale_timesteps)),
    ];
    let mut notes = Vec::new();
    if repo == Repo::AnalysingDdgm {
        f.push(format!("--in_channels {c}"));
        f.push(format!("--channel_mult {}", list(&mults)));
        f.push(format!(
            "--num_head_channels {}",
            u.num_head_channels.map_or(-1, |n| n as i64)
        ));
        f.push(format!(
            "--use_new_attention_order {}",
            b(u.attention_order == AttentionOrder::New)
        ));
        if let Some(n) = u.num_classes {
            f.push(format!("--num_classes {n}"));
        }
    }
    if d.sigma == ModelVarType::FixedSmall && !d.learn_sigma {
        if repo == Repo::ImprovedDiffusion {
            f.push("--sigma_small True".into());
        } else {
            notes.push(
                "sigma = fixed-small has no flag in the paper's code (it uses fixed-large)".into(),
            );
        }
    }
    schedule_flags(cfg, repo, &mut f, &mut notes);
    Ok((repo, f.join(" "), notes))
}

fn schedule_flags(
    cfg: &ExperimentConfig,
    repo: Repo,
    f: &mut Vec<String>,
    notes: &mut Vec<String>,
) {
    let d = &cfg.diffusion;
    let linear_start = match repo {
        Repo::ImprovedDiffusion => 1e-4,
        Repo::AnalysingDdgm => 1e-3,
    };
    let linear_ok = d.schedule == BetaSchedule::Linear
        && d.beta_start == linear_start
        && d.beta_end == 0.02
        && d.scale_betas;
    if cfg.model == ModelKind::Daed {
        f.push("--model_name TwoPartsUNetModelDAE".into());
        if cfg.daed.process != DaedProcess::LinearCombine {
            notes.push(
                "daed's `switch` DAED process has no counterpart in the paper's code: the parts \
                 load into TwoPartsUNetModelDAE, but its linear_combine process differs"
                    .into(),
            );
        }
        if linear_ok {
            f.push("--noise_schedule linear_combine".into());
            f.push(format!("--first_step_beta {}", cfg.daed.beta1));
            return;
        }
    }
    match d.schedule {
        BetaSchedule::Cosine => f.push("--noise_schedule cosine".into()),
        BetaSchedule::Linear if linear_ok => f.push("--noise_schedule linear".into()),
        BetaSchedule::Linear => notes.push(format!(
            "the linear schedule {}..{} (scaled: {}) is not {}'s; --noise_schedule is left out",
            d.beta_start,
            d.beta_end,
            d.scale_betas,
            repo.name()
        )),
    }
}
