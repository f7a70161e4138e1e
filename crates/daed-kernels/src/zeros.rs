//! Zeroed buffers whose zeroing is split across rayon's threads, and buffers that need none.
//!
//! A profile of the CPU recipe's training step (2 cores) found a fifth of its wall time on the
//! calling thread alone, while the workers waited; a third of that was `vec![0.0; n]` for the
//! outputs of daed's own kernels: the memset (the caching allocator hands back used blocks) and
//! the first touch of fresh pages, done before the parallel loop that fills the buffer.
use std::mem::MaybeUninit;

use rayon::prelude::*;

/// Buffers shorter than this are zeroed on the calling thread.
const SERIAL_BELOW: usize = 1 << 16;
/// Elements zeroed per task.
const CHUNK: usize = 1 << 15;

/// `vec![0.0; n]`, zeroed by all of rayon's threads when `n` is large.
pub fn zeros(n: usize) -> Vec<f32> {
    if n < SERIAL_BELOW {
        return vec![0.0; n];
    }
    let mut v: Vec<f32> = Vec::with_capacity(n);
    v.spare_capacity_mut()[..n]
        .par_chunks_mut(CHUNK)
        .for_each(|c| c.fill(MaybeUninit::new(0.0)));
    // SAFETY: the capacity is at least `n` and its first `n` elements were written above.
    unsafe { v.set_len(n) };
    v
}

/// A buffer of `n` values that `fill` writes in full, without zeroing it first (for outputs a
/// kernel writes every element of). `fill` gets the buffer as a slice whose initial contents
/// are unspecified.
///
/// # Safety
/// `fill` must write every one of the `n` values and read none before writing it.
pub unsafe fn written(n: usize, fill: impl FnOnce(&mut [f32])) -> Vec<f32> {
    let mut v: Vec<f32> = Vec::with_capacity(n);
    // SAFETY: the capacity holds `n` values; `fill` only writes them (the caller's promise).
    fill(unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr(), n) });
    // SAFETY: all `n` were written.
    unsafe { v.set_len(n) };
    v
}

#[cfg(test)]
mod tests {
    #[test]
    fn written_keeps_what_fill_wrote() {
        for n in [0, 5, 1 << 20] {
            // Memory freed with values in it, then handed out again (under the caching allocator
            // in tests/zeros_reuse.rs).
            drop(vec![7.0f32; n]);
            // SAFETY: the closure writes all `n` values.
            let v = unsafe {
                super::written(n, |s| {
                    s.iter_mut().enumerate().for_each(|(i, x)| *x = i as f32)
                })
            };
            assert_eq!(v.len(), n);
            assert!(v.iter().enumerate().all(|(i, &x)| x == i as f32), "n = {n}");
        }
    }

    #[test]
    fn zeros_are_zero_at_every_length() {
        for n in [0, 1, 65_535, 65_536, 100_001, 3 << 20] {
            let mut v = super::zeros(n);
            assert_eq!(v.len(), n);
            assert!(v.iter().all(|x| x.to_bits() == 0), "n = {n}");
            // Memory freed with values in it (tests/zeros_reuse.rs: under the caching allocator).
            v.iter_mut().for_each(|x| *x = 7.0);
            drop(v);
            assert!(super::zeros(n).iter().all(|x| x.to_bits() == 0), "n = {n}");
        }
    }
}
