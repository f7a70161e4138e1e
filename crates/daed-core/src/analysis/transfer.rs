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
use crate::{Error, Result};
use daed_io::atomic::write_atomic;
use daed_io::table::Table;
use std::path::Path;

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

/// One target dataset of the transfer table.
pub struct TransferRow {
    /// The dataset's name.
    pub target: String,
    /// The DDGM's steps equivalent to beta1.
    pub k: usize,
    /// The DDGM's reconstruction error.
    pub ddgm: ReconPoint,
    /// The DAE's reconstruction error.
    pub dae: ReconPoint,
    /// The images at every stage.
    pub images: TransferImages,
    /// Their shape [C, H, W].
    pub shape: [usize; 3],
}

/// The transfer table (Table 2) over several targets.
pub struct TransferStudy {
    /// The DAE's noise level.
    pub beta1: f64,
    /// One row per target.
    pub rows: Vec<TransferRow>,
}

impl TransferStudy {
    /// Runs the transfer on every named set (already conformed to the models' shape).
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        ddgm: &UNet,
        d: &GaussianDiffusion,
        dae: &DaedNets,
        beta1: f64,
        sets: &[(String, ImageSet)],
        batch: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let mut rows = Vec::new();
        for (name, set) in sets {
            let (pd, pa, images, k) =
                transfer(ddgm, d, dae, beta1, set, name, batch, seed, device)?;
            rows.push(TransferRow {
                target: name.clone(),
                k,
                ddgm: pd,
                dae: pa,
                images,
                shape: [set.channels, set.height, set.width],
            });
        }
        Ok(TransferStudy { beta1, rows })
    }

    /// `transfer.csv`: target, model, MAE, MS-SSIM, k.
    pub fn table(&self) -> Table {
        let mut table = Table::new(["target", "model", "mae", "msssim", "k"]);
        for r in &self.rows {
            for (model, p) in [("DDGM", &r.ddgm), ("DAED", &r.dae)] {
                table.push([
                    r.target.clone(),
                    model.into(),
                    format!("{:.4}", p.mae_mean),
                    format!("{:.4}", p.msssim_mean),
                    r.k.to_string(),
                ]);
            }
        }
        table
    }

    /// The table as the paper lays it out: a row per model, MAE and MS-SSIM per target.
    pub fn markdown(&self) -> String {
        let mut md = format!("Reconstruction of images noised with beta1 = {} (MAE on the [0,1] scale, MS-SSIM)\n\n| Model |", self.beta1);
        for r in &self.rows {
            md.push_str(&format!(" {t} MAE | {t} MS-SSIM |", t = r.target));
        }
        md.push_str("\n|---|");
        md.push_str(&"---|---|".repeat(self.rows.len()));
        md.push('\n');
        for (model, pick) in [
            (
                "DDGM",
                (|r: &TransferRow| &r.ddgm) as fn(&TransferRow) -> &ReconPoint,
            ),
            ("DAED", |r: &TransferRow| &r.dae),
        ] {
            let cells: Vec<String> = self
                .rows
                .iter()
                .map(|r| format!("{:.3} | {:.2}", pick(r).mae_mean, pick(r).msssim_mean))
                .collect();
            md.push_str(&format!("| {model} | {} |\n", cells.join(" | ")));
        }
        md
    }

    /// Writes `transfer.csv`, `transfer.md` and `transfer.png` (8 images of each target at every
    /// stage) into `out`.
    pub fn write(&self, out: &Path) -> Result<()> {
        std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        self.table().write_csv(out.join("transfer.csv"))?;
        write_atomic(out.join("transfer.md"), self.markdown().as_bytes())?;
        let mut grids = Vec::new();
        for r in &self.rows {
            let [c, h, w] = r.shape;
            let m = (r.images.original.len() / (c * h * w)).min(8);
            let part = |v: &[f32]| ImageSet::from_f32(c, h, w, &v[..m * c * h * w]);
            let t = &r.target;
            grids.push((format!("{t}: original"), part(&r.images.original)));
            grids.push((format!("{t}: noisy"), part(&r.images.noisy)));
            grids.push((format!("{t}: DDGM"), part(&r.images.ddgm)));
            grids.push((format!("{t}: DAE"), part(&r.images.dae)));
        }
        let items: Vec<(&str, &ImageSet)> = grids.iter().map(|(n, s)| (n.as_str(), s)).collect();
        daed_io::grid::save_grids_side_by_side(out.join("transfer.png"), &items, 1)?;
        Ok(())
    }
}
