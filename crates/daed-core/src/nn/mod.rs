//! Networks: improved-diffusion's U-Net (used both as the epsilon model and as the DAE).
pub mod blocks;
pub mod unet;

pub use unet::{UNet, UNetConfig};
