//! A linear layer over a batch of token sequences, `y = x W + b`, that reads its input and writes
//! its output in either of two layouts: tokens (`[B, T, C]`) or channels (`[B, C, T]`, an image's
//! `[B, C, H, W]` with the pixels as tokens).
//!
//! An attention block projects a feature map (channels) to queries, keys and values (tokens) and
//! back. Written with burn's `Linear`, that is a transposing copy, flex's batched matmul (an
//! allocation zeroed and copied once more before the GEMM writes it) and another transposing copy,
//! all in f32; the profile of the CIFAR-10 U-Net's bf16 step had 11% of its samples there. Here
//! each image is one GEMM whose operand strides read and write the layouts as they are, through
//! the convolution's GEMM ([`crate::conv::kernel`]): in f32, or in bf16 in a bf16 scope
//! ([`crate::precision`]), as PyTorch's autocast runs its linear layers. Gradients through its own
//! backward step under autodiff. Other backends, and everything when `DAED_LINEAR=burn`, use
//! burn's operations (same values in f32).
#[cfg(feature = "flex")]
mod ext;
#[cfg(feature = "flex")]
mod kernel;

#[cfg(all(test, feature = "flex"))]
mod tests;

use burn::tensor::Tensor;

/// How a batch of token sequences lies in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `[B, T, C]`: each token's channels side by side.
    Tokens,
    /// `[B, C, T]`: each channel's tokens side by side (a feature map's `[B, C, H, W]`).
    Channels,
}

/// `x W + b` with `x` laid out as `input`, the result as `output`; `weight` is `[C_in, C_out]`
/// (burn `Linear`'s), `bias` `[C_out]`.
pub fn linear(
    x: Tensor<3>,
    weight: Tensor<2>,
    bias: Tensor<1>,
    input: Layout,
    output: Layout,
) -> Tensor<3> {
    #[cfg(feature = "flex")]
    if ext::applies(&x) {
        return ext::linear(x, weight, bias, [input, output]);
    }
    reference(x, weight, bias, input, output)
}

/// [`linear`] with burn's operations.
fn reference(
    x: Tensor<3>,
    weight: Tensor<2>,
    bias: Tensor<1>,
    input: Layout,
    output: Layout,
) -> Tensor<3> {
    let tokens = match input {
        Layout::Tokens => x,
        Layout::Channels => x.swap_dims(1, 2),
    };
    let y = tokens.matmul(weight.unsqueeze()) + bias.unsqueeze();
    match output {
        Layout::Tokens => y,
        Layout::Channels => y.swap_dims(1, 2),
    }
}
