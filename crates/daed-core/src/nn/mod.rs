//! Networks: improved-diffusion's U-Net (used both as the epsilon model and as the DAE).
pub mod blocks;
pub mod dropout;
pub mod unet;

/// daed's own flex kernels (the `daed-kernels` crate), used here through burn's backend
/// extension: the same calls run burn's operations on other backends.
pub use daed_kernels::{conv, norm, parallel, pool, softmax};

pub use blocks::AttentionOrder;
pub use unet::{LabelConditioning, UNet, UNetConfig};

use burn::tensor::Tensor;

/// Anything that predicts the model output (epsilon, plus the variance channels when learned)
/// from x_t and the original timesteps: the U-Net, or an oracle in tests.
pub trait EpsModel {
    /// [B, C, H, W] and B timesteps -> the raw model output.
    fn predict(&self, x: Tensor<4>, timesteps: &[f32]) -> Tensor<4>;
}

/// A class-conditional U-Net with every image of a batch given one class.
pub struct WithClass<'a> {
    /// The network.
    pub net: &'a UNet,
    /// The class.
    pub class: usize,
}

impl EpsModel for WithClass<'_> {
    fn predict(&self, x: Tensor<4>, timesteps: &[f32]) -> Tensor<4> {
        let y = vec![self.class; x.dims()[0]];
        self.net.forward_inference_labelled(x, timesteps, Some(&y))
    }
}

impl EpsModel for UNet {
    fn predict(&self, x: Tensor<4>, timesteps: &[f32]) -> Tensor<4> {
        self.forward_inference(x, timesteps)
    }
}
