//! daed-eval: framework-free evaluation numerics for the paper's Section 3 analyses.
//!
//! * [`ssim`]: SSIM and MS-SSIM on host `f32` images (pytorch-msssim conventions), with a documented
//!   adaptation of MS-SSIM to small (28, 32, 64 px) images.
//! * [`snr`]: the per-image log-SNR of the forward diffusion (paper eq. 10, Figures 1 and 7).
//! * [`fid`], [`inception_score`], [`prdc`], [`prd`]: FID/sFID statistics and the Fréchet
//!   distance, Inception Score, k-NN precision/recall and PRD on Inception features
//!   ([`linalg`] holds the dense f64 kernels they need).
//! * [`recon`]: MAE / MS-SSIM statistics of reconstructions at step `t` (Figure 2), with CSV, PNG and
//!   JSON outputs.
//!
//! Nothing here depends on a tensor framework: images are flat NCHW `f32` slices in [-1, 1].

#![warn(missing_docs)]

pub mod error;
pub mod fid;
pub mod inception_score;
pub mod linalg;
pub mod prd;
pub mod prdc;
pub mod recon;
pub mod snr;
pub mod ssim;
pub mod stats;

pub use error::{Error, Result};
