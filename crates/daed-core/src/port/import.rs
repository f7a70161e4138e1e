//! Importing a PyTorch checkpoint (improved-diffusion's `model*.pt` / `ema_*.pt`, the paper
//! code's `*_part_1.pt` + `*_part_2.pt`) as a daed run directory.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::Device;

use super::flags::{Repo, TorchFlags};
use super::names::{from_state_dict, Slot};
use crate::config::{ExperimentConfig, ModelKind};
use crate::daed::DaedNets;
use crate::model::Build;
use crate::nn::UNet;
use crate::tensor_io::NamedArray;
use crate::train::checkpoint::{self, CheckpointState, FORMAT_VERSION};
use crate::{Error, Result};

/// The PyTorch files of an import.
#[derive(Clone, Debug, Default)]
pub struct TorchFiles {
    /// The network's weights (`model*.pt`), for a single network.
    pub model: Option<PathBuf>,
    /// Its EMA weights (`ema_<rate>_<step>.pt`), optional.
    pub ema: Option<PathBuf>,
    /// The two-part DAED's DAE (`*_part_1.pt`).
    pub dae: Option<PathBuf>,
    /// The two-part DAED's generator (`*_part_2.pt`).
    pub generator: Option<PathBuf>,
}

/// What an import wrote.
pub struct Imported {
    /// The checkpoint directory inside the run.
    pub checkpoint: PathBuf,
    /// The run's config.
    pub config: ExperimentConfig,
    /// The image shape [C, H, W].
    pub shape: [usize; 3],
    /// Remarks for the user (defaults chosen, what a flag means in daed).
    pub notes: Vec<String>,
}

/// Imports `files` (made by `repo`'s code with `flags`) as a daed run in `out`, which must not
/// hold a run yet. `dataset` overrides the dataset the run's config names.
pub fn import(
    repo: Repo,
    flags: &str,
    files: &TorchFiles,
    dataset: Option<&str>,
    out: &Path,
) -> Result<Imported> {
    let parsed = TorchFlags::parse(repo, flags)?;
    let shape = parsed.image_shape()?;
    crate::config::check_image_shape(shape).map_err(|m| Error::Invalid(format!("--flags: {m}")))?;
    let mut cfg = parsed.to_config()?;
    let mut notes = Vec::new();
    set_dataset(&mut cfg, &parsed, dataset, shape, &mut notes)?;
    check_files(&cfg, files)?;
    if !checkpoint::list(out)?.is_empty() || out.join("state.json").exists() {
        return Err(Error::Invalid(format!(
            "{}: already holds a run; give a new --out (nothing is overwritten)",
            out.display()
        )));
    }
    cfg.name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "imported".into());
    cfg.train.out_dir = Some(out.to_path_buf());
    let (model, ema) = match cfg.model {
        ModelKind::Ddgm => ddgm_arrays(&cfg, shape, files)?,
        ModelKind::Daed => {
            let a = daed_arrays(&cfg, shape, files)?;
            (a.clone(), a)
        }
    };
    let step = files
        .model
        .as_ref()
        .or(files.generator.as_ref())
        .and_then(|p| step_in_name(p))
        .unwrap_or(0);
    if let Some(rate) = files.ema.as_ref().and_then(|p| ema_rate_in_name(p)) {
        cfg.train.ema_rate = rate;
    }
    cfg.train.steps = step;
    cfg.validate()?;
    if cfg.diffusion.learn_sigma && parsed.repo == Repo::AnalysingDdgm {
        notes.push(
            "learn_sigma without rescale_learned_sigmas trains with MSE + VLB in PyTorch; daed's \
             hybrid loss weights the VLB by T/1000 (matters only for further training)"
                .into(),
        );
    }
    let (d, sampler_kind) = match cfg.model {
        ModelKind::Ddgm => (UNet::process(&cfg)?, UNet::step_sampler(&cfg)),
        ModelKind::Daed => (DaedNets::process(&cfg)?, DaedNets::step_sampler(&cfg)),
    };
    let state = CheckpointState {
        format_version: FORMAT_VERSION,
        step,
        model_kind: cfg.model.to_string(),
        image_shape: shape,
        config_toml: cfg.to_toml(),
        seed: cfg.train.seed,
        adam_t: 0,
        step_sampler: crate::diffusion::step_sampler::StepSampler::new(sampler_kind, &d.betas),
        checksums: Default::default(),
    };
    let checkpoint = checkpoint::save(out, state, [model, ema, BTreeMap::new()], 0)?;
    write_provenance(out, repo, flags, files)?;
    Ok(Imported {
        checkpoint,
        config: cfg,
        shape,
        notes,
    })
}

fn set_dataset(
    cfg: &mut ExperimentConfig,
    parsed: &TorchFlags,
    dataset: Option<&str>,
    shape: [usize; 3],
    notes: &mut Vec<String>,
) -> Result<()> {
    if let Some(name) = dataset {
        name.parse::<daed_io::datasets::DatasetName>()
            .map_err(|e| Error::Invalid(format!("--dataset: {e}")))?;
        cfg.data.dataset = name.to_string();
        return Ok(());
    }
    if parsed.names_dataset() {
        return Ok(());
    }
    let guess = match shape {
        [1, 28, 28] => "fashion-mnist",
        [3, 32, 32] => "cifar10",
        [3, 64, 64] => "imagenet64",
        _ => "folder",
    };
    cfg.data.dataset = guess.into();
    notes.push(format!(
        "data.dataset set to `{guess}` from the image shape {shape:?} (the analyses read it); \
         --dataset sets another"
    ));
    Ok(())
}

/// The files each kind of model needs, present and readable.
fn check_files(cfg: &ExperimentConfig, f: &TorchFiles) -> Result<()> {
    type Flags<'a> = &'a [(&'a str, &'a Option<PathBuf>)];
    let (need, refuse): (Flags, Flags) = match cfg.model {
        ModelKind::Ddgm => (
            &[("--model", &f.model)],
            &[("--dae", &f.dae), ("--generator", &f.generator)],
        ),
        ModelKind::Daed => (
            &[("--dae", &f.dae), ("--generator", &f.generator)],
            &[("--model", &f.model), ("--ema", &f.ema)],
        ),
    };
    let what = match cfg.model {
        ModelKind::Ddgm => "a single network (model_name UNetModel)",
        ModelKind::Daed => "a two-part DAED (model_name TwoPartsUNetModelDAE)",
    };
    for (flag, p) in need {
        if p.is_none() {
            return Err(Error::Invalid(format!(
                "the flags describe {what}: give {flag}"
            )));
        }
    }
    for (flag, p) in refuse {
        if p.is_some() {
            return Err(Error::Invalid(format!(
                "the flags describe {what}: {flag} does not apply"
            )));
        }
    }
    for p in [&f.model, &f.ema, &f.dae, &f.generator]
        .into_iter()
        .flatten()
    {
        if !p.is_file() {
            return Err(Error::ckpt(p, "no such file"));
        }
    }
    Ok(())
}

fn slots<M: burn::module::Module>(m: &M) -> Vec<Slot> {
    crate::tensor_io::params(m)
        .into_iter()
        .map(|p| Slot {
            path: p.path,
            shape: p.shape,
        })
        .collect()
}

fn read_checked(path: &Path) -> Result<BTreeMap<String, daed_io::pth::PthTensor>> {
    let state = daed_io::pth::read_pth(path)?;
    if let Some((k, _)) = state
        .iter()
        .find(|(_, t)| t.data.iter().any(|v| !v.is_finite()))
    {
        return Err(Error::ckpt(
            path,
            format!("tensor `{k}` has values that are not finite"),
        ));
    }
    Ok(state)
}

type Arrays = BTreeMap<String, NamedArray>;

fn ddgm_arrays(
    cfg: &ExperimentConfig,
    shape: [usize; 3],
    f: &TorchFiles,
) -> Result<(Arrays, Arrays)> {
    let device = Device::flex();
    let d = UNet::process(cfg)?;
    let net = UNet::build(cfg, &d, shape, &device)?;
    let s = slots(&net);
    let load = |p: &PathBuf| from_state_dict(&s, &read_checked(p)?, "", None, p);
    let model = load(f.model.as_ref().expect("checked"))?;
    let ema = match &f.ema {
        Some(p) => load(p)?,
        None => model.clone(),
    };
    Ok((model, ema))
}

fn daed_arrays(cfg: &ExperimentConfig, shape: [usize; 3], f: &TorchFiles) -> Result<Arrays> {
    let device = Device::flex();
    let d = DaedNets::process(cfg)?;
    let nets = DaedNets::build(cfg, &d, shape, &device)?;
    let gen = slots(&nets.generator);
    let dae = slots(&nets.dae);
    let gp = f.generator.as_ref().expect("checked");
    let dp = f.dae.as_ref().expect("checked");
    let mut out = from_state_dict(&gen, &read_checked(gp)?, "generator.", None, gp)?;
    out.extend(from_state_dict(
        &dae,
        &read_checked(dp)?,
        "dae.",
        Some(shape[0]),
        dp,
    )?);
    Ok(out)
}

/// The training step in a checkpoint's file name: `model200000.pt`, `ema_0.9999_200000.pt`,
/// `model100000_0_part_2.pt` (the first run of digits after the prefix).
pub fn step_in_name(path: &Path) -> Option<u64> {
    let name = path.file_stem()?.to_str()?;
    let rest = name.strip_prefix("model").or_else(|| {
        name.strip_prefix("ema_")
            .and_then(|r| r.split_once('_').map(|x| x.1))
    })?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The EMA rate in `ema_<rate>_<step>.pt`.
pub fn ema_rate_in_name(path: &Path) -> Option<f64> {
    let name = path.file_stem()?.to_str()?;
    let rate = name.strip_prefix("ema_")?.split('_').next()?;
    rate.parse().ok().filter(|r: &f64| (0.0..1.0).contains(r))
}

/// `import.json`: where the run came from (repo, flags, each file's SHA-256).
fn write_provenance(out: &Path, repo: Repo, flags: &str, f: &TorchFiles) -> Result<()> {
    let mut files = serde_json::Map::new();
    for (role, p) in [
        ("model", &f.model),
        ("ema", &f.ema),
        ("dae", &f.dae),
        ("generator", &f.generator),
    ] {
        if let Some(p) = p {
            let bytes = std::fs::read(p).map_err(|e| Error::io(p, e))?;
            files.insert(
                role.into(),
                serde_json::json!({
                    "path": p.display().to_string(),
                    "sha256": checkpoint::sha256_hex(&bytes),
                }),
            );
        }
    }
    let json = serde_json::json!({
        "repo": repo.name(),
        "flags": flags,
        "files": files,
        "tool": format!("daed {}", env!("CARGO_PKG_VERSION")),
    });
    let text = serde_json::to_string_pretty(&json).expect("json");
    daed_io::atomic::write_atomic(out.join("import.json"), text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_and_rates_from_file_names() {
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(step_in_name(&p("runs/model200000.pt")), Some(200000));
        assert_eq!(step_in_name(&p("ema_0.9999_200000.pt")), Some(200000));
        assert_eq!(step_in_name(&p("model100000_0_part_2.pt")), Some(100000));
        assert_eq!(step_in_name(&p("weights.pt")), None);
        assert_eq!(ema_rate_in_name(&p("ema_0.9999_200000.pt")), Some(0.9999));
    }
}
