//! `zeros` under the caching allocator daed's binary installs: a block freed with values in it
//! comes back from the cache, so only the explicit zeroing makes it zero.
use daed_kernels::alloc::CachingAlloc;

#[global_allocator]
static ALLOC: CachingAlloc = CachingAlloc::new(1 << 30);

#[test]
fn reused_blocks_come_back_zeroed() {
    let n = 1 << 20;
    let mut v = daed_kernels::zeros::zeros(n);
    let first = v.as_ptr() as usize;
    v.iter_mut().for_each(|x| *x = 7.0);
    drop(v);
    let w = daed_kernels::zeros::zeros(n);
    assert_eq!(
        w.as_ptr() as usize,
        first,
        "the cache handed back the same block"
    );
    assert!(w.iter().all(|x| x.to_bits() == 0));
}
