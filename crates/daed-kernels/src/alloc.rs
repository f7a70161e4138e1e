//! A global allocator that keeps large freed blocks for reuse.
//!
//! Why: a profile of the paper's Fashion-MNIST training step on flex spent 40% of its samples
//! in the kernel zeroing fresh pages (`clear_page_erms` under page faults). Every large tensor
//! (an attention matrix at 28x28 is hundreds of MB) was a new `mmap` from glibc, touched page
//! by page, then unmapped on free; the next step faulted it all in again. This allocator keeps
//! freed blocks of at least [`MIN_CACHED`] bytes in size classes (a quarter of a power of two
//! apart) and hands them out again, up to [`CachingAlloc::new`]'s byte cap; smaller requests go
//! straight to the system allocator. Install it in a binary with
//! `#[global_allocator] static A: CachingAlloc = CachingAlloc::new(8 << 30);`.
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Blocks smaller than this go to the system allocator directly.
pub const MIN_CACHED: usize = 1 << 20;
/// Alignment of every cached block (requests that need more bypass the cache).
const ALIGN: usize = 64;
/// Size classes: 4 per power of two from 2^20 to 2^40.
const CLASSES: usize = 4 * 20;
/// Free blocks kept per class.
const SLOTS: usize = 64;

/// Free blocks of one size class (all of the class's size).
#[derive(Clone, Copy)]
struct Bin {
    ptrs: [usize; SLOTS],
    len: usize,
}

const EMPTY_BIN: Bin = Bin {
    ptrs: [0; SLOTS],
    len: 0,
};

/// The caching allocator (see the module documentation).
pub struct CachingAlloc {
    bins: Mutex<[Bin; CLASSES]>,
    cached: AtomicUsize,
    cap: AtomicUsize,
}

/// The class of a request of `size >= MIN_CACHED` bytes and the size of its blocks.
fn class_of(size: usize) -> Option<(usize, usize)> {
    let p = usize::BITS - 1 - size.leading_zeros(); // 2^p <= size < 2^(p+1)
    let base = 1usize << p;
    let quarter = base / 4;
    let step = size.saturating_sub(base).div_ceil(quarter); // 0..=4
    let (p, step) = if step == 4 { (p + 1, 0) } else { (p, step) };
    let idx = (p as usize).checked_sub(20)? * 4 + step;
    (idx < CLASSES).then(|| (idx, class_size(idx)))
}

impl CachingAlloc {
    /// An allocator keeping at most `cap` bytes of freed large blocks.
    pub const fn new(cap: usize) -> Self {
        Self {
            bins: Mutex::new([EMPTY_BIN; CLASSES]),
            cached: AtomicUsize::new(0),
            cap: AtomicUsize::new(cap),
        }
    }

    /// Changes the byte cap (0 turns caching off); blocks over it are released.
    pub fn set_cap(&self, cap: usize) {
        self.cap.store(cap, Ordering::Relaxed);
        if self.cached_bytes() > cap {
            self.release();
        }
    }

    /// Bytes held in the cache now.
    pub fn cached_bytes(&self) -> usize {
        self.cached.load(Ordering::Relaxed)
    }

    /// Returns every cached block to the system.
    pub fn release(&self) {
        let Ok(mut bins) = self.bins.lock() else {
            return;
        };
        for (idx, bin) in bins.iter_mut().enumerate() {
            let size = class_size(idx);
            for &p in &bin.ptrs[..bin.len] {
                // SAFETY: every cached pointer came from `System.alloc` with this layout.
                unsafe {
                    System.dealloc(p as *mut u8, Layout::from_size_align_unchecked(size, ALIGN))
                };
                self.cached.fetch_sub(size, Ordering::Relaxed);
            }
            bin.len = 0;
        }
        drop(bins);
        trim_system_heap();
    }

    fn take(&self, idx: usize, size: usize) -> Option<*mut u8> {
        let mut bins = self.bins.lock().ok()?;
        let bin = &mut bins[idx];
        if bin.len == 0 {
            return None;
        }
        bin.len -= 1;
        self.cached.fetch_sub(size, Ordering::Relaxed);
        Some(bin.ptrs[bin.len] as *mut u8)
    }

    fn put(&self, idx: usize, size: usize, p: *mut u8) -> bool {
        if self.cached.load(Ordering::Relaxed) + size > self.cap.load(Ordering::Relaxed) {
            return false;
        }
        let Ok(mut bins) = self.bins.lock() else {
            return false;
        };
        let bin = &mut bins[idx];
        if bin.len == SLOTS {
            return false;
        }
        bin.ptrs[bin.len] = p as usize;
        bin.len += 1;
        self.cached.fetch_add(size, Ordering::Relaxed);
        true
    }

    fn alloc_large(&self, layout: Layout, zeroed: bool) -> Option<*mut u8> {
        if layout.size() < MIN_CACHED || layout.align() > ALIGN {
            return None;
        }
        let (idx, size) = class_of(layout.size())?;
        if let Some(p) = self.take(idx, size) {
            if zeroed {
                // SAFETY: the block holds at least `size >= layout.size()` bytes.
                unsafe { p.write_bytes(0, layout.size()) };
            }
            return Some(p);
        }
        // SAFETY: size is non-zero and ALIGN a power of two.
        let l = unsafe { Layout::from_size_align_unchecked(size, ALIGN) };
        let fresh = || unsafe {
            if zeroed {
                System.alloc_zeroed(l)
            } else {
                System.alloc(l)
            }
        };
        let p = fresh();
        if !p.is_null() {
            return Some(p);
        }
        // Out of memory: give the cache back and try once more.
        self.release();
        Some(fresh())
    }
}

/// Gives glibc's free heap memory back to the kernel (elsewhere a no-op).
fn trim_system_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: malloc_trim only releases free memory of the C heap; it is thread-safe.
        unsafe {
            malloc_trim(0);
        }
    }
}

fn class_size(idx: usize) -> usize {
    let p = 20 + idx / 4;
    (1usize << p) + (idx % 4) * ((1usize << p) / 4)
}

// SAFETY: large blocks are allocated with the layout of their class and only handed out for
// requests that fit in it (size and alignment); everything else is the system allocator's.
unsafe impl GlobalAlloc for CachingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.alloc_large(layout, false) {
            Some(p) => p,
            None => System.alloc(layout),
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match self.alloc_large(layout, true) {
            Some(p) => p,
            None => System.alloc_zeroed(layout),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() >= MIN_CACHED && layout.align() <= ALIGN {
            if let Some((idx, size)) = class_of(layout.size()) {
                if !self.put(idx, size, ptr) {
                    System.dealloc(ptr, Layout::from_size_align_unchecked(size, ALIGN));
                }
                return;
            }
        }
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let large = |s: usize| s >= MIN_CACHED && layout.align() <= ALIGN && class_of(s).is_some();
        if !large(layout.size()) && !large(new_size) {
            return System.realloc(ptr, layout, new_size);
        }
        if let (Some((a, _)), Some((b, _))) = (class_of(layout.size()), class_of(new_size)) {
            if a == b {
                return ptr; // same class: the block already fits
            }
        }
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        let q = self.alloc(new_layout);
        if !q.is_null() {
            std::ptr::copy_nonoverlapping(ptr, q, layout.size().min(new_size));
            self.dealloc(ptr, layout);
        }
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_cover_the_request_and_waste_at_most_a_quarter() {
        for size in [
            MIN_CACHED,
            MIN_CACHED + 1,
            3 << 20,
            (5 << 20) - 7,
            315 << 20,
            (1 << 33) + 12345,
        ] {
            let (idx, cls) = class_of(size).unwrap();
            assert!(cls >= size, "{size} -> {cls}");
            assert!((cls - size) as f64 <= 0.25 * size as f64, "{size} -> {cls}");
            assert_eq!(class_size(idx), cls);
        }
        // Neighbouring requests share a class only when the block fits both.
        assert_ne!(
            class_of(MIN_CACHED).unwrap().0,
            class_of(MIN_CACHED + 1).unwrap().0
        );
    }

    #[test]
    fn freed_blocks_are_reused_and_released() {
        let a = CachingAlloc::new(64 << 20);
        let l = Layout::from_size_align(3 << 20, 8).unwrap();
        unsafe {
            let p = a.alloc(l);
            assert!(!p.is_null());
            p.write_bytes(7, l.size());
            a.dealloc(p, l);
            assert_eq!(a.cached_bytes(), 3 << 20);
            let q = a.alloc_zeroed(l);
            assert_eq!(q, p, "the freed block comes back");
            assert!(std::slice::from_raw_parts(q, l.size())
                .iter()
                .all(|&b| b == 0));
            assert_eq!(a.cached_bytes(), 0);
            a.dealloc(q, l);
        }
        a.release();
        assert_eq!(a.cached_bytes(), 0);
    }

    #[test]
    fn the_cap_is_respected() {
        let a = CachingAlloc::new(5 << 20);
        let l = Layout::from_size_align(4 << 20, 8).unwrap();
        unsafe {
            let p = a.alloc(l);
            let q = a.alloc(l);
            a.dealloc(p, l);
            a.dealloc(q, l); // over the cap: back to the system
        }
        assert_eq!(a.cached_bytes(), 4 << 20);
        a.release();
    }
}
