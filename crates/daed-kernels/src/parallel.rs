//! Inference on two halves of a batch at once.
//!
//! flex runs its GEMMs on all cores but every element-wise op (GroupNorm, SiLU, adds,
//! concatenation) on the calling thread, so a forward pass keeps about 1.6 of 2 cores busy.
//! Two threads, each running the network on half of the batch, fill some of the gaps: measured
//! in three alternating rounds at batch 32 (medians of 5), the sampling forward of the CIFAR-10
//! U-Net went 5.20/5.60/5.45 s -> 4.96/5.34/4.80 s, Fashion-MNIST 3.05/3.50/3.02 s ->
//! 2.87/3.11/3.09 s, and the FID Inception (batch 50) 6.49/7.20/6.41 s -> 6.07/6.30/6.94 s:
//! about 5-7%, on a noisy shared machine. Each image's computation does not depend on the
//! others and inference draws no random numbers, so the result is the whole-batch result.
//! Only used without gradients, on flex, with two or more cores; `DAED_SPLIT_BATCH=0` turns it
//! off.
use std::ops::Range;

use burn::tensor::{Device, Tensor};

/// Whether splitting a batch of `b` on `device` pays: flex, no autodiff, b >= 2, >= 2 cores
/// (and not turned off by `DAED_SPLIT_BATCH=0`).
pub fn split_helps(device: &Device, b: usize) -> bool {
    #[cfg(feature = "flex")]
    let flex = *device == Device::flex();
    #[cfg(not(feature = "flex"))]
    let flex = false;
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let enabled = *ENABLED
        .get_or_init(|| std::env::var("DAED_SPLIT_BATCH").map_or(true, |v| v.trim() != "0"));
    enabled
        && b >= 2
        && flex
        && !device.is_autodiff()
        && std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2)
}

/// `f(x, 0..b)`, or `join(f(first half, 0..h), f(second half, h..b))` computed on two threads
/// when [`split_helps`]. `f` gets the rows' range so it can pick per-row inputs. The second
/// thread runs at this thread's [`crate::precision`].
pub fn on_halves<T: Send>(
    x: Tensor<4>,
    f: impl Fn(Tensor<4>, Range<usize>) -> T + Sync,
    join: impl FnOnce(T, T) -> T,
) -> T {
    let b = x.dims()[0];
    if !split_helps(&x.device(), b) {
        return f(x, 0..b);
    }
    let h = b / 2;
    let (x1, x2) = (x.clone().narrow(0, 0, h), x.narrow(0, h, b - h));
    let precision = crate::precision::current();
    let (first, second) = std::thread::scope(|s| {
        let a = s.spawn(|| crate::precision::scope(precision, || f(x1, 0..h)));
        let second = f(x2, h..b);
        (a.join(), second)
    });
    match first {
        Ok(first) => join(first, second),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Concatenates two batches along the batch dimension.
pub fn cat_batches<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> Tensor<D> {
    Tensor::cat(vec![a, b], 0)
}

/// Test helper: `f` run on a rayon pool of `threads` threads.
#[cfg(test)]
pub(crate) fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("test thread pool")
        .install(f)
}
