//! One evaluation pass on a handful of images: streaming statistics, the feature cache, the
//! metrics and their errors.
use burn::tensor::Device;
use daed_core::burn;
use daed_core::metrics::evaluate::{
    cache_key, compute_features, compute_metrics, read_cache, write_cache, MetricSet, SetFeatures,
};
use daed_core::metrics::{default_weights, FidInception, Preprocess, POOL_DIM, SPATIAL_DIM};
use daed_io::images::ImageSet;

fn images(n: usize, seed: u64) -> ImageSet {
    let mut x = seed;
    let px = (0..n * 3 * 32 * 32)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 56) as u8
        })
        .collect();
    ImageSet::new(3, 32, 32, px, None).unwrap()
}

#[test]
fn features_cache_and_metrics_of_a_few_images() {
    let w = default_weights().expect("FID Inception weights under ../shared/data/inception");
    let net = FidInception::open(&w, &Device::flex()).unwrap();
    let set = images(4, 1);
    let mut calls = Vec::new();
    let f = compute_features(
        &net,
        Preprocess::PytorchFid,
        &set,
        3,
        true,
        true,
        &mut |d, t| calls.push((d, t)),
    )
    .unwrap();
    assert_eq!(calls, vec![(3, 4), (4, 4)]);
    assert_eq!(f.n, 4);
    assert_eq!(f.fid.dim, POOL_DIM);
    assert_eq!(f.sfid.as_ref().unwrap().dim, SPATIAL_DIM);
    assert_eq!(f.pool.as_ref().unwrap().len(), 4 * POOL_DIM);
    assert!(
        f.logits.is_none(),
        "the shared weights have no logits layer"
    );

    // Cache round trip, keyed by content.
    let dir = std::env::temp_dir().join(format!("daed-metrics-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let key = cache_key(&set, Preprocess::PytorchFid, &w);
    assert_ne!(key, cache_key(&images(4, 2), Preprocess::PytorchFid, &w));
    assert!(read_cache(&dir, &key, true, false).is_none());
    write_cache(&dir, &key, &f).unwrap();
    let back = read_cache(&dir, &key, true, false).unwrap();
    assert_eq!(back.fid, f.fid);
    assert_eq!(back.sfid, f.sfid);
    assert_eq!(back.pool, f.pool);
    assert!(
        read_cache(&dir, &key, true, true).is_none(),
        "no logits cached"
    );

    // A set against itself: 4 images give rank-3 covariances; as pytorch-fid, no offset is
    // added (the square root is finite) and the distance is 0.
    let all = MetricSet::parse(&["fid".into(), "sfid".into(), "pr".into()]).unwrap();
    let m = compute_metrics(&f, &back, all, "shared file").unwrap();
    let fid = m.fid.as_ref().unwrap();
    assert_eq!(fid.eps_added, None);
    assert_eq!(fid.ranks, [3, 3]);
    assert!(fid.value.abs() < 1e-6, "{fid:?}");
    let pr = m.precision_recall.as_ref().unwrap();
    assert_eq!((pr.precision, pr.recall), (1.0, 1.0));
    let md = m.markdown();
    assert!(md.starts_with("| FID | sFID | IS | Prec | Rec |"), "{md}");
    assert!(md.contains("| - | 1.00 | 1.00 |"), "{md}");

    // Statistics files interchange: written, read back, usable as a reference for FID only.
    let stats = dir.join("ref.npz");
    f.write_stats(&stats).unwrap();
    let r = SetFeatures::from_stats_file(&stats).unwrap();
    assert_eq!(r.fid, f.fid);
    let fid_only = MetricSet::parse(&["fid".into()]).unwrap();
    assert!(compute_metrics(&f, &r, fid_only, "x").is_ok());
    let e = compute_metrics(&f, &r, all, "x").unwrap_err().to_string();
    assert!(e.contains("per-image features"), "{e}");
    let is = MetricSet::parse(&["is".into()]).unwrap();
    let e = compute_metrics(&f, &f, is, "the shared file")
        .unwrap_err()
        .to_string();
    assert!(e.contains("logits") && e.contains("the shared file"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_requests_are_clear_errors() {
    let e = MetricSet::parse(&["fid".into(), "kid".into()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown metric `kid`"), "{e}");
    assert!(MetricSet::parse(&[]).is_err());
    let w = default_weights().unwrap();
    let net = FidInception::open(&w, &Device::flex()).unwrap();
    let empty = ImageSet::new(3, 32, 32, Vec::new(), None).unwrap();
    let e = compute_features(
        &net,
        Preprocess::PytorchFid,
        &empty,
        8,
        false,
        false,
        &mut |_, _| {},
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("empty"), "{e}");
    let one = images(1, 3);
    let e = compute_features(
        &net,
        Preprocess::PytorchFid,
        &one,
        8,
        false,
        false,
        &mut |_, _| {},
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("at least 2"), "{e}");
}
