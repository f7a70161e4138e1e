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
/// kernel writes every element of). `fill` gets the buffer as uninitialised slots: it writes
/// them with [`MaybeUninit::write`], [`copy_into`] or [`fill_from`].
///
/// # Safety
/// `fill` must write every one of the `n` values.
pub unsafe fn written(n: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut v: Vec<f32> = Vec::with_capacity(n);
    fill(&mut v.spare_capacity_mut()[..n]);
    // SAFETY: the capacity holds `n` values, and `fill` wrote all of them (the caller's promise).
    unsafe { v.set_len(n) };
    v
}

/// Copies `src` into the slots `dst` (of the same length) and hands them back as values.
pub fn copy_into<'a>(dst: &'a mut [MaybeUninit<f32>], src: &[f32]) -> &'a mut [f32] {
    fill_from(dst, src.iter().copied())
}

/// Writes the slots `dst` from `values` (at least as many) and hands them back as values.
pub fn fill_from(
    dst: &mut [MaybeUninit<f32>],
    values: impl IntoIterator<Item = f32>,
) -> &mut [f32] {
    let mut count = 0;
    for (slot, v) in dst.iter_mut().zip(values) {
        slot.write(v);
        count += 1;
    }
    assert_eq!(count, dst.len(), "fill_from: fewer values than slots");
    // SAFETY: every slot was written just above, and `MaybeUninit<f32>` has `f32`'s layout.
    unsafe { std::slice::from_raw_parts_mut(dst.as_mut_ptr().cast::<f32>(), dst.len()) }
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
                    super::fill_from(s, (0..n).map(|i| i as f32));
                })
            };
            assert_eq!(v.len(), n);
            assert!(v.iter().enumerate().all(|(i, &x)| x == i as f32), "n = {n}");
        }
    }

    #[test]
    fn copy_into_hands_back_the_values() {
        let mut slots = vec![std::mem::MaybeUninit::<f32>::uninit(); 3];
        assert_eq!(
            super::copy_into(&mut slots, &[1.0, 2.0, 3.0]),
            &[1.0, 2.0, 3.0]
        );
    }

    #[test]
    #[should_panic(expected = "fewer values than slots")]
    fn fill_from_refuses_to_leave_slots_unwritten() {
        let mut slots = vec![std::mem::MaybeUninit::<f32>::uninit(); 3];
        super::fill_from(&mut slots, [1.0, 2.0]);
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
