//! Transformed Winograd weights kept across the forward passes of a scope whose weights do not
//! change (sampling).
//!
//! Every Winograd forward transforms its 3x3 kernels into 36 entries each (`G g G^T`, four
//! times the weights' size), anew per call: 7% of the samples of a CIFAR-10 sampling forward
//! (bf16, batch 32). Sampling runs the same weights through hundreds of forwards; inside
//! [`frozen_weights`], the first forward of each weight tensor keeps its transform and the later
//! ones reuse it, so the outputs have the same bits.
//!
//! **Why a hit is the same values.** An entry holds a clone of the weight tensor, a share of its
//! storage: that storage is not freed while the entry lives (its address cannot come back
//! holding other values) and not written in place (flex copies shared storage before writing
//! it). The key is the values' address and length and the kernel's shape.
//!
//! **Memory.** At most [`CAP_BYTES`] of transforms are kept (CIFAR-10's U-Net: its sampling
//! peak rose by about 500-570 MiB); layers past that are transformed per call, as outside a
//! scope. All are freed when the outermost scope ends.
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use burn::backend::flex::FlexTensor;

use super::kernel::Geom;
use super::winograd;
use crate::flex_ops::f32s;

/// The most bytes of transformed weights one scope keeps.
pub const CAP_BYTES: usize = 2 << 30;

/// Which weights: the address and length of their values, and `[co, ci]`.
type Key = (usize, usize, [usize; 2]);

/// One kept transform and the weights it came from.
struct Entry {
    /// A share of the weights' storage (see the module docs).
    _pin: FlexTensor,
    u: Arc<Vec<f32>>,
}

/// The transforms of one scope.
#[derive(Default)]
struct Cache {
    entries: HashMap<Key, Entry>,
    bytes: usize,
}

thread_local! {
    /// This thread's cache while a [`frozen_weights`] scope runs on it.
    static CACHE: RefCell<Option<Cache>> = const { RefCell::new(None) };
}

/// Runs `f` with the Winograd forwards started on this thread keeping their transformed weights
/// (see the module docs); nested scopes share the outermost one's. The caller promises nothing:
/// weights that change between forwards are new storage, so a new entry.
pub fn frozen_weights<R>(f: impl FnOnce() -> R) -> R {
    /// Ends the scope it opened (also when `f` panics).
    struct End(bool);
    impl Drop for End {
        fn drop(&mut self) {
            if self.0 {
                CACHE.with(|c| c.borrow_mut().take());
            }
        }
    }
    let opened = CACHE.with(|c| {
        let mut c = c.borrow_mut();
        let open = c.is_none();
        if open {
            *c = Some(Cache::default());
        }
        open
    });
    let _end = End(opened);
    f()
}

/// The transformed weights of `weight` (dense f32) for a Winograd forward of `g`, kept or made
/// now; `None` outside a scope or where Winograd does not apply.
pub(super) fn transformed(g: &Geom, weight: &FlexTensor) -> Option<Arc<Vec<f32>>> {
    if !winograd::applies(g) || CACHE.with(|c| c.borrow().is_none()) {
        return None;
    }
    let wt = f32s(weight);
    let key = (wt.as_ptr() as usize, wt.len(), [g.co, g.ci]);
    if let Some(u) = CACHE.with(|c| c.borrow().as_ref()?.entries.get(&key).map(|e| e.u.clone())) {
        return Some(u);
    }
    let u = Arc::new(winograd::transformed_weights(g, wt));
    let bytes = u.len() * std::mem::size_of::<f32>();
    CACHE.with(|c| {
        if let Some(cache) = c.borrow_mut().as_mut() {
            if cache.bytes + bytes <= CAP_BYTES {
                cache.bytes += bytes;
                let entry = Entry {
                    _pin: weight.clone(),
                    u: u.clone(),
                };
                cache.entries.insert(key, entry);
            }
        }
    });
    Some(u)
}

/// How many transforms this thread's scope keeps now (0 outside one).
pub fn kept() -> usize {
    CACHE.with(|c| c.borrow().as_ref().map_or(0, |c| c.entries.len()))
}
