//! Sampling a checkpoint whatever its model kind (a DDGM's U-Net or a DAED's two networks): what
//! `daed sample` and the quality curve draw with.
use burn::tensor::Device;

use crate::config::ModelKind;
use crate::daed::DaedNets;
use crate::model::DiffusionNet;
use crate::nn::UNet;
use crate::sample::{KeptBatches, SampleOptions};
use crate::train::Checkpoint;
use crate::Result;
use daed_io::images::ImageSet;
use std::path::{Path, PathBuf};

/// Draws `n` images in [-1, 1] (NCHW) from the model of `ck`, whatever its kind, with
/// the EMA weights (`ema = true`) or the raw ones, `batch` per pass; also returns the model's
/// number of diffusion steps.
#[allow(clippy::too_many_arguments)]
pub fn sample(
    ck: &Checkpoint,
    ema: bool,
    n: usize,
    batch: usize,
    opts: &SampleOptions,
    device: &Device,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Vec<f32>, usize)> {
    match ck.config.model {
        ModelKind::Ddgm => draw::<UNet>(ck, ema, n, batch, opts, device, progress),
        ModelKind::Daed => draw::<DaedNets>(ck, ema, n, batch, opts, device, progress),
    }
}

/// Checks that [`sample`] can run with `opts` (weights readable and finite, the
/// respacing within the model's steps, the class matching the model, the precision
/// available) without drawing anything.
pub fn check_sampling(
    ck: &Checkpoint,
    ema: bool,
    opts: &SampleOptions,
    device: &Device,
) -> Result<()> {
    match ck.config.model {
        ModelKind::Ddgm => check::<UNet>(ck, ema, opts, device),
        ModelKind::Daed => check::<DaedNets>(ck, ema, opts, device),
    }
}

fn check<M: DiffusionNet>(
    ck: &Checkpoint,
    ema: bool,
    opts: &SampleOptions,
    device: &Device,
) -> Result<()> {
    opts.validate()?;
    let (net, d) = ck.load_model::<M>(ema, device)?;
    opts.check_class(net.num_classes())?;
    M::sampling_process(&d, &opts.respacing)?;
    opts.precision.resolve("sample.precision", device)?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn draw<M: DiffusionNet>(
    ck: &Checkpoint,
    ema: bool,
    n: usize,
    batch: usize,
    opts: &SampleOptions,
    device: &Device,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Vec<f32>, usize)> {
    let (net, d) = ck.load_model::<M>(ema, device)?;
    let imgs = net.sample(&d, ck.state.image_shape, n, batch, opts, device, progress)?;
    Ok((imgs, d.num_steps()))
}

/// Writes drawn images as `daed sample` does: the guided-diffusion `.npz` at `npz` (with `labels`
/// as `arr_1`) and a grid of the first 256 beside it (`.png`); returns the grid's path.
pub fn save(npz: &Path, set: &ImageSet, labels: Option<&[i64]>) -> Result<PathBuf> {
    let png = npz.with_extension("png");
    crate::train::trainer::save_grid(&png, &set.take(set.len().min(256)))?;
    daed_io::npz::write_images_npz(npz, set, labels)?;
    Ok(png)
}

/// Where a run drawing `n` images into `npz` keeps its finished batches (`TAG.parts` beside it),
/// identified by what sets their bits: the checkpoint's `state.json` (which holds the weights'
/// checksums), the weights, the options, the batch size, the device, daed's version and the
/// kernel switches set (`daed_kernels::SWITCHES`). A rerun of the same command continues there.
#[allow(clippy::too_many_arguments)]
pub fn keep_beside(
    npz: &Path,
    ck: &Checkpoint,
    ema: bool,
    n: usize,
    batch: usize,
    opts: &SampleOptions,
    device: &Device,
) -> Result<KeptBatches> {
    let sp = ck.dir.join("state.json");
    let state = std::fs::read(&sp).map_err(|e| crate::Error::io(&sp, e))?;
    let identity = serde_json::json!({
        "checkpoint_step": ck.state.step,
        "state_sha256": crate::train::checkpoint::sha256_hex(&state),
        "weights": if ema { "ema" } else { "raw" },
        "samples": opts.file_tag(n, ema),
        "clip_denoised": opts.clip_denoised,
        "batch": batch,
        "image_shape": ck.state.image_shape,
        "device": format!("{device:?}"),
        "daed": env!("CARGO_PKG_VERSION"),
        "kernel_switches": daed_kernels::switches_set(),
    });
    Ok(KeptBatches::beside(npz, identity))
}
