//! Which arithmetic daed's CPU kernels use: plain f32, or bf16 products summed in f32 where the
//! CPU has AVX512-BF16 (`vdpbf16ps`).
//!
//! The choice is per thread and scoped ([`scope`]): the trainer and the sampler open a scope
//! around the network's forward and backward passes; everything outside one (the FID Inception,
//! the analyses) runs in f32. Only the im2col convolution GEMMs change (the 3x3 convolutions on
//! Winograd stay f32, see `conv::winograd::applies`): weights, activations, gradients, the
//! optimiser and every reduction stay f32 (mixed precision with f32 master weights). A kernel
//! asked for bf16 on a CPU without it runs in f32; the configuration check is where such a
//! request is refused with an error.
use std::cell::Cell;
use std::sync::OnceLock;

/// The arithmetic of the convolution GEMMs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// f32 products and sums (the default, and the reference).
    #[default]
    F32,
    /// Operands rounded to bf16 (to nearest even) as they are packed, products summed in f32.
    Bf16,
}

impl Precision {
    /// `"f32"` or `"bf16"`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }
}

thread_local! {
    static CURRENT: Cell<Precision> = const { Cell::new(Precision::F32) };
}

/// Whether this process runs the bf16 kernels: the CPU has AVX512-F, -BW and -BF16 (detected
/// at run time) and daed's convolution is on (not `DAED_CONV=burn`). `DAED_BF16=off` makes it
/// answer `false`, to try the f32-only path on a CPU that has bf16.
pub fn bf16_supported() -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        let off = |var: &str, value: &str| std::env::var(var).is_ok_and(|v| v.trim() == value);
        !off("DAED_BF16", "off") && !off("DAED_CONV", "burn") && detect_bf16()
    })
}

#[cfg(target_arch = "x86_64")]
fn detect_bf16() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512bf16")
}

#[cfg(not(target_arch = "x86_64"))]
fn detect_bf16() -> bool {
    false
}

/// The precision this thread's kernels use now.
pub fn current() -> Precision {
    CURRENT.with(Cell::get)
}

/// Whether the GEMMs started on this thread now run in bf16: asked for, and supported.
pub fn bf16_active() -> bool {
    current() == Precision::Bf16 && bf16_supported()
}

/// Runs `f` with this thread's kernels at `precision`, restoring the previous one afterwards
/// (also when `f` panics).
pub fn scope<R>(precision: Precision, f: impl FnOnce() -> R) -> R {
    struct Restore(Precision);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(CURRENT.with(|c| c.replace(precision)));
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_sets_and_restores_the_thread_precision() {
        assert_eq!(current(), Precision::F32);
        let inner = scope(Precision::Bf16, || {
            let nested = scope(Precision::F32, current);
            (current(), nested)
        });
        assert_eq!(inner, (Precision::Bf16, Precision::F32));
        assert_eq!(current(), Precision::F32);
        let other = scope(Precision::Bf16, || {
            std::thread::spawn(current).join().unwrap()
        });
        assert_eq!(other, Precision::F32, "another thread keeps its own");
        let caught = std::panic::catch_unwind(|| scope(Precision::Bf16, || panic!("inside")));
        assert!(caught.is_err());
        assert_eq!(current(), Precision::F32, "restored after a panic");
    }
}
