//! Transfer (Table 2, Figure 6): noise target images with beta1 and reconstruct them with the
//! DAE in one pass, and with the DDGM run backward over the equivalent k steps.
use burn::tensor::{Device, Tensor};
use daed_eval::recon::{recon_point, ReconPoint};
use daed_io::images::ImageSet;

use super::{image_batches, ImageBatch};
use crate::daed::{switch_index, DaedNets};
use crate::diffusion::GaussianDiffusion;
use crate::nn::UNet;
use crate::rng::{Stream, TRANSFER_CHAINS};
use crate::sample::{noise, p_sample_loop_from, SampleOptions};
use crate::tensor_io::to_vec;
use crate::Result;

/// The images of one target at every stage: original, noisy, DDGM and DAE reconstructions.
pub struct TransferImages {
    /// x0.
    pub original: Vec<f32>,
    /// x1 = sqrt(1 - beta1) x0 + sqrt(beta1) eps.
    pub noisy: Vec<f32>,
    /// The DDGM's reconstruction from step k.
    pub ddgm: Vec<f32>,
    /// The DAE's reconstruction.
    pub dae: Vec<f32>,
}

/// Reconstructs `set` both ways; returns the DDGM's and the DAE's error (labelled `target`,
/// at step k), the images, and the switch index k.
#[allow(clippy::too_many_arguments)]
pub fn transfer(
    ddgm: &UNet,
    d: &GaussianDiffusion,
    dae: &DaedNets,
    beta1: f64,
    set: &ImageSet,
    target: &str,
    batch: usize,
    seed: u64,
    device: &Device,
) -> Result<(ReconPoint, ReconPoint, TransferImages, usize)> {
    let [c, h, w] = [set.channels, set.height, set.width];
    let k = switch_index(&d.alphas_cumprod, beta1);
    let mut out = TransferImages {
        original: Vec::new(),
        noisy: Vec::new(),
        ddgm: Vec::new(),
        dae: Vec::new(),
    };
    let opts = SampleOptions::ancestral(seed);
    for ImageBatch {
        index: bi,
        host,
        x0,
    } in image_batches(set, batch, device)
    {
        let b = x0.dims()[0];
        let eps = noise(
            [b, c, h, w],
            seed,
            Stream::AnalysisNoise { batch: bi, t: 0 },
            device,
        );
        let x1 = x0.mul_scalar((1.0 - beta1).sqrt()) + eps.mul_scalar(beta1.sqrt());
        // The DDGM treats x1 as x_k (alpha-bar_k is the closest to 1 - beta1).
        let rd = p_sample_loop_from(
            ddgm,
            d,
            x1.clone(),
            k - 1,
            &opts,
            TRANSFER_CHAINS + bi,
            &mut |_, _| {},
        );
        let ra = dae.denoise(x1.clone(), beta1).clamp(-1.0, 1.0);
        let flat = |t: Tensor<4>| to_vec(t.reshape([b * c * h * w]));
        out.original.extend(host);
        out.noisy.extend(flat(x1.clamp(-1.0, 1.0))?);
        out.ddgm.extend(flat(rd)?);
        out.dae.extend(flat(ra)?);
    }
    let pd = recon_point(target, k, &out.original, &out.ddgm, c, h, w)?;
    let pa = recon_point(target, k, &out.original, &out.dae, c, h, w)?;
    Ok((pd, pa, out, k))
}
