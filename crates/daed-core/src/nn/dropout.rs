//! Dropout masks keyed by (seed, training step, sample, layer) instead of drawn from the
//! device's generator.
//!
//! A device generator is one stream per device (burn's flex has one for the whole process), so
//! its draws depend on how a batch is split into micro-batches, on which device each part runs
//! and on the order threads reach it. Keyed masks do not: sample `i` of step `s` gets the same
//! mask in every layer whether the batch runs whole, in micro-batches or across devices in
//! parallel, which is what makes data-parallel training reproduce one device's run.
//!
//! The trainer opens a [`scope`] around each part of the batch; outside a scope the layer falls
//! back to burn's own dropout.
use std::cell::RefCell;

use burn::nn::Dropout;
use burn::tensor::{Bool, Tensor, TensorData};
use rayon::prelude::*;

use crate::rng::{Rng, Stream};

/// What keys the masks of one forward pass.
#[derive(Clone, Copy, Debug)]
struct Keys {
    seed: u64,
    step: u64,
    /// The position in the whole batch of this part's first sample.
    first: usize,
    /// Dropout layers met so far in this forward pass.
    layer: u64,
}

thread_local! {
    static KEYS: RefCell<Option<Keys>> = const { RefCell::new(None) };
}

/// Runs `f` with dropout keyed by training `step` of `seed`, row 0 of its batch being sample
/// `first` of the whole batch. Scopes do not nest: the inner one replaces the outer until it
/// ends.
pub fn scope<R>(seed: u64, step: u64, first: usize, f: impl FnOnce() -> R) -> R {
    let keys = Keys {
        seed,
        step,
        first,
        layer: 0,
    };
    with_keys(keys, f)
}

/// Inside a [`scope`], runs `f` on rows `offset..` of the scope's batch with its own layer
/// numbering for network `net` (1 to 15): for a model that sends different rows through
/// different networks (DAED), each network's masks then do not depend on how the batch splits.
/// Outside a scope, just `f()`.
pub fn rows<R>(offset: usize, net: u64, f: impl FnOnce() -> R) -> R {
    match KEYS.with(|k| *k.borrow()) {
        None => f(),
        Some(outer) => with_keys(
            Keys {
                first: outer.first + offset,
                layer: net << 12,
                ..outer
            },
            f,
        ),
    }
}

/// Runs `f` with `keys`, then puts back what was there before.
fn with_keys<R>(keys: Keys, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Keys>);
    impl Drop for Restore {
        fn drop(&mut self) {
            KEYS.with(|k| *k.borrow_mut() = self.0);
        }
    }
    let _restore = Restore(KEYS.with(|k| k.borrow_mut().replace(keys)));
    f()
}

/// The layer's dropout of `x` (`[B, ...]`): keyed inside a [`scope`], burn's otherwise. Off
/// where burn's is off (probability 0, a frozen layer, no autodiff).
pub fn forward<const D: usize>(layer: &Dropout, x: Tensor<D>) -> Tensor<D> {
    let active = layer.prob > 0.0 && layer.training.is_enabled() && x.device().is_autodiff();
    let keys = KEYS.with(|k| {
        let mut k = k.borrow_mut();
        let now = (*k)?;
        k.as_mut().expect("just read").layer += 1;
        Some(now)
    });
    let flex = on_flex(&x);
    match (active, keys) {
        (false, _) => x,
        (true, None) => layer.forward(x),
        (true, Some(keys)) if flex => {
            let dims = x.dims();
            let keep = (1.0 / (1.0 - layer.prob)) as f32;
            let mask = mask(keys, dims, layer.prob, keep, 0.0);
            let mask = Tensor::<D>::from_data(TensorData::new(mask, dims), &x.device());
            x * mask
        }
        (true, Some(keys)) => keyed_on_device(x, keys, layer.prob),
    }
}

/// On flex the mask is multiplied in as f32 (a copy in memory); other devices get a mask of
/// bools, a quarter of the bytes to send, and drop and scale there. The same values either way.
fn on_flex<const D: usize>(x: &Tensor<D>) -> bool {
    #[cfg(feature = "flex")]
    return x.device() == burn::tensor::Device::flex().autodiff();
    #[cfg(not(feature = "flex"))]
    return false;
}

/// The keyed dropout of `x` with a mask of bools.
fn keyed_on_device<const D: usize>(x: Tensor<D>, keys: Keys, prob: f64) -> Tensor<D> {
    let dims = x.dims();
    let drop = mask(keys, dims, prob, false, true);
    let drop = Tensor::<D, Bool>::from_data(TensorData::new(drop, dims), &x.device());
    x.mask_fill(drop, 0.0).mul_scalar(1.0 / (1.0 - prob))
}

/// The mask of a tensor of `dims` (rows along the first): `dropped` with probability `prob`,
/// `kept` otherwise; row `r` from the stream of sample `keys.first + r`, so a row does not
/// depend on the others.
fn mask<T: Copy + Send + Sync, const D: usize>(
    keys: Keys,
    dims: [usize; D],
    prob: f64,
    kept: T,
    dropped: T,
) -> Vec<T> {
    let (rows, row_len) = (dims[0], dims[1..].iter().product::<usize>());
    // A value is dropped when its 32 random bits fall below prob * 2^32.
    let cut = (prob * 4_294_967_296.0).min(u32::MAX as f64) as u32;
    let mut out = vec![kept; rows * row_len];
    out.par_chunks_mut(row_len.max(1))
        .enumerate()
        .for_each(|(r, row)| {
            let sample = (keys.first + r) as u64;
            let stream = Stream::Dropout {
                step: keys.step,
                sample,
                layer: keys.layer,
            };
            let mut rng = Rng::stream(keys.seed, stream);
            for pair in row.chunks_mut(2) {
                let bits = rng.next_u64();
                for (v, half) in pair.iter_mut().zip([bits as u32, (bits >> 32) as u32]) {
                    *v = if half >= cut { kept } else { dropped };
                }
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;
    use burn::nn::DropoutConfig;
    use burn::tensor::Device;

    fn ones(rows: usize) -> Tensor<2> {
        Tensor::ones([rows, 4096], &Device::flex().autodiff())
    }

    fn values(t: Tensor<2>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec().unwrap()
    }

    #[test]
    fn a_sample_keeps_its_mask_whatever_the_split() {
        let layer = DropoutConfig::new(0.3).init();
        let whole = values(scope(7, 3, 0, || forward(&layer, ones(4))));
        let rest = values(scope(7, 3, 2, || forward(&layer, ones(2))));
        assert_eq!(whole[2 * 4096..], rest[..]);
        // Rows differ from each other, and the next layer and the next step differ too.
        assert_ne!(whole[..4096], whole[4096..2 * 4096]);
        let (second, _) = scope(7, 3, 0, || {
            (forward(&layer, ones(1)), forward(&layer, ones(1)))
        });
        let other_step = values(scope(7, 4, 0, || forward(&layer, ones(1))));
        assert_eq!(values(second), whole[..4096]);
        assert_ne!(other_step, whole[..4096]);
    }

    #[test]
    fn masks_drop_the_asked_share_and_scale_the_rest() {
        let layer = DropoutConfig::new(0.3).init();
        let v = values(scope(1, 0, 0, || forward(&layer, ones(8))));
        let dropped = v.iter().filter(|&&x| x == 0.0).count() as f64 / v.len() as f64;
        assert!((dropped - 0.3).abs() < 0.01, "{dropped}");
        let keep = 1.0 / 0.7f32;
        assert!(v.iter().all(|&x| x == 0.0 || x == keep));
    }

    #[test]
    fn the_bool_mask_of_other_devices_gives_the_same_values() {
        let layer = DropoutConfig::new(0.4).init();
        let x = Tensor::<2>::random(
            [3, 500],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &Device::flex().autodiff(),
        );
        let keys = Keys {
            seed: 5,
            step: 2,
            first: 4,
            layer: 0,
        };
        let f32_path = values(scope(5, 2, 4, || forward(&layer, x.clone())));
        let bool_path = values(keyed_on_device(x, keys, 0.4));
        let differ = f32_path
            .iter()
            .zip(&bool_path)
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(differ, 0, "of {}", f32_path.len());
    }

    #[test]
    fn rows_shift_the_samples_and_number_each_network_apart() {
        let layer = DropoutConfig::new(0.3).init();
        // Rows 2.. of a batch seen by network 2 after network 1 used some layers...
        let (_, second) = scope(7, 3, 0, || {
            rows(0, 1, || forward(&layer, ones(2)));
            (0, rows(2, 2, || forward(&layer, ones(2))))
        });
        // ... get the masks of the same rows when network 2 takes the batch from row 2 alone.
        let alone = scope(7, 3, 2, || rows(0, 2, || forward(&layer, ones(2))));
        assert_eq!(values(second), values(alone));
        assert_eq!(
            values(rows(5, 1, || forward(
                &DropoutConfig::new(0.0).init(),
                ones(1)
            ))),
            vec![1.0; 4096]
        );
    }

    #[test]
    fn off_without_autodiff_or_when_frozen() {
        let layer = DropoutConfig::new(0.5).init();
        let plain = Tensor::<2>::ones([2, 64], &Device::flex());
        let v = values(scope(1, 0, 0, || forward(&layer, plain)));
        assert!(v.iter().all(|&x| x == 1.0));
        let frozen = layer.valid();
        let v = values(scope(1, 0, 0, || forward(&frozen, ones(2))));
        assert!(v.iter().all(|&x| x == 1.0));
    }
}
