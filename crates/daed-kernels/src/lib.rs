//! daed's own CPU kernels for burn's `flex` backend, and its allocator.
//!
//! Each operation is a burn backend extension with a hand-written backward step, so the model
//! code (daed-core's `nn`) calls one function that runs this kernel on flex and burn's own
//! operations on every other backend (CUDA, libtorch): `conv` (im2col + GEMM, and Winograd
//! F(4x4, 3x3) for 3x3 stride-1 convolutions; forward and all gradients), `norm` (GroupNorm
//! statistics; per-channel multiply-add + SiLU), `softmax` (last dimension), `attention` (fused
//! per block of queries, inference), `vexp` (eight-lane `exp` under the softmax and the SiLU),
//! `pool` (max / inside-mean, inference), `parallel` (the two halves of a batch on two threads,
//! inference). `DAED_CONV=burn`, `DAED_NORM=burn`, `DAED_SOFTMAX=burn`, `DAED_ATTENTION=burn`
//! and `DAED_POOL=burn` switch back to burn's operations, `DAED_WINOGRAD=0` to im2col. `alloc`
//! keeps large freed blocks for reuse.
pub mod alloc;
pub mod attention;
mod bf16;
pub mod conv;
#[cfg(feature = "flex")]
mod flex_ops;
pub mod norm;
pub mod parallel;
pub mod pool;
pub mod precision;
pub mod softmax;
pub mod vexp;
pub mod zeros;

/// The environment variables that choose between kernels, and so can change the bits of a
/// result (same values, other rounding): what a resumable job records to refuse mixing them.
pub const SWITCHES: [&str; 7] = [
    "DAED_ATTENTION",
    "DAED_BF16",
    "DAED_CONV",
    "DAED_NORM",
    "DAED_POOL",
    "DAED_SOFTMAX",
    "DAED_WINOGRAD",
];

/// The [`SWITCHES`] set in this process's environment, as `NAME=VALUE` in the list's order.
pub fn switches_set() -> Vec<String> {
    SWITCHES
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| format!("{k}={v}")))
        .collect()
}
