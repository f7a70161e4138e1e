//! Zeroed buffers whose zeroing is split across rayon's threads.
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

#[cfg(test)]
mod tests {
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
