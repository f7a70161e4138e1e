//! daed's own 2-D convolution on the flex backend, forward and backward.
//!
//! burn-flex runs a convolution by transposing NCHW to NHWC, re-packing the weights for every
//! tile of 512 pixels, and (for training) takes the input gradient through a transposed
//! convolution and the weight gradient through a convolution whose "kernel" is the whole image.
//! Profiles of the CIFAR-10 U-Net showed that bookkeeping, mostly on one core, next to the GEMMs.
//! [`kernel`] does im2col + one GEMM per image, images spread over the threads, and gets all three
//! gradients in one pass; 3x3, stride-1, padding-1 convolutions with at least 16 channels in and
//! out (most of a U-Net's) run as Winograd F(4x4, 3x3) instead ([`winograd`]: forward, input and
//! weight gradients, a quarter of the multiplications; `DAED_WINOGRAD=0` turns it off), and
//! stride-1 convolutions with at most four output channels (a U-Net's last layer) as a direct
//! convolution ([`direct`]). It is wired in through burn's backend-extension mechanism: the
//! [`ConvExt`] operation has a flex implementation and an `Autodiff<Flex>` one with its own
//! backward step. Other backends (CUDA, libtorch), grouped or dilated convolutions, asymmetric
//! padding, convolutions without a bias and non-f32 tensors keep burn's convolution; so does
//! everything when `DAED_CONV=burn`. Inside [`frozen_weights`] (sampling), Winograd forwards
//! keep their transformed weights from one call to the next.
pub mod direct;
pub mod kernel;
pub mod winograd;

use burn::nn::conv::Conv2d;
use burn::nn::PaddingConfig2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::Tensor;

/// Convolution with an optional bias, through daed's kernel where it applies (see the module
/// docs), otherwise burn's `conv2d`.
pub fn conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: ConvOptions<2>,
) -> Tensor<4> {
    #[cfg(feature = "flex")]
    if let Some(b) = &bias {
        if ext::applies(&x, &options) {
            return ext::conv2d(x, weight, b.clone(), options);
        }
    }
    burn::tensor::module::conv2d(x, weight, bias, options)
}

/// A burn `Conv2d` module's forward pass through [`conv2d`] (symmetric explicit padding; other
/// padding configurations use the module's own forward).
pub fn forward(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let padding = match conv.padding {
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => {
            [top, left]
        }
        PaddingConfig2d::Valid => [0, 0],
        _ => return conv.forward(x),
    };
    let options = ConvOptions::new(conv.stride, padding, conv.dilation, conv.groups);
    conv2d(
        x,
        conv.weight.val(),
        conv.bias.as_ref().map(|b| b.val()),
        options,
    )
}

#[cfg(feature = "flex")]
mod ext;
#[cfg(feature = "flex")]
mod frozen;
#[cfg(feature = "flex")]
pub use frozen::{frozen_weights, kept};

/// Runs `f` (without the flex backend there are no transformed weights to keep).
#[cfg(not(feature = "flex"))]
pub fn frozen_weights<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(all(test, feature = "flex"))]
mod tests;
