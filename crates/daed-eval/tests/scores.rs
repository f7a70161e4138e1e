//! Inception Score, k-NN precision/recall and PRD on synthetic inputs with known answers.
mod common;

use common::Rng;
use daed_eval::inception_score::{inception_score, IS_SPLIT_SIZE};
use daed_eval::prd::{prd, prd_curve, PrdOptions};
use daed_eval::prdc::{manifold_radii, precision_recall, PR_K};

#[test]
fn inception_score_of_uniform_logits_is_one() {
    let logits = vec![0.25f32; 10 * 1008];
    let s = inception_score(&logits, 1008, IS_SPLIT_SIZE).unwrap();
    assert!((s.mean - 1.0).abs() < 1e-12, "{s:?}");
    assert_eq!(s.splits, 1);
}

#[test]
fn inception_score_of_confident_distinct_classes_is_the_class_count() {
    // n images, each certain of its own class among c: IS = c when classes are used equally.
    let (c, per) = (8, 5);
    let mut logits = vec![0.0f32; c * per * c];
    for i in 0..c * per {
        logits[i * c + i % c] = 200.0;
    }
    let s = inception_score(&logits, c, IS_SPLIT_SIZE).unwrap();
    assert!((s.mean - c as f64).abs() < 1e-9, "{s:?}");
    // Splits of 8 images each hold every class once: each split scores 8.
    let s = inception_score(&logits, c, 8).unwrap();
    assert_eq!(s.splits, 5);
    assert!((s.mean - 8.0).abs() < 1e-9 && s.std < 1e-9, "{s:?}");
}

#[test]
fn inception_score_rejects_bad_inputs() {
    assert!(inception_score(&[], 1008, 5000).is_err());
    assert!(inception_score(&[0.0; 1007], 1008, 5000).is_err());
    let mut l = vec![0.0f32; 2016];
    l[1010] = f32::NAN;
    let e = inception_score(&l, 1008, 5000).unwrap_err().to_string();
    assert!(e.contains("logit 2 of image 1"), "{e}");
}

/// Points on a line: x_i = (i, 0).
fn line(range: std::ops::Range<usize>) -> Vec<f32> {
    range.flat_map(|i| [i as f32, 0.0]).collect()
}

#[test]
fn precision_recall_of_known_point_clouds() {
    // Identical sets: both 1.
    let a = line(0..100);
    let pr = precision_recall(&a, &a, 2, PR_K).unwrap();
    assert_eq!((pr.precision, pr.recall), (1.0, 1.0));

    // Interior points have squared radius 4 (neighbours at 1, 1, 2); the ends 9.
    let r = manifold_radii(&a, 2, 3).unwrap();
    assert_eq!((r[0], r[50], r[99]), (9.0, 4.0, 9.0));

    // Mode dropping: samples = the first 40 reference points. Every sample lies on a reference
    // point (precision 1); the sample manifold reaches 3 past its last point (recall 43/100).
    let s = line(0..40);
    let pr = precision_recall(&a, &s, 2, PR_K).unwrap();
    assert_eq!(pr.precision, 1.0);
    assert!((pr.recall - 43.0 / 100.0).abs() < 1e-12, "{pr:?}");

    // Far apart: both 0.
    let far: Vec<f32> = line(0..100).iter().map(|v| v + 1e4).collect();
    let pr = precision_recall(&a, &far, 2, PR_K).unwrap();
    assert_eq!((pr.precision, pr.recall), (0.0, 0.0));

    // Gaussian clouds: the same distribution scores high on both, a shrunken one keeps
    // precision but loses recall.
    let mut rng = Rng::new(7);
    let g = |rng: &mut Rng, n: usize, s: f64| -> Vec<f32> {
        (0..n * 16).map(|_| (s * rng.normal()) as f32).collect()
    };
    let r = g(&mut rng, 500, 1.0);
    let same = g(&mut rng, 500, 1.0);
    let narrow = g(&mut rng, 500, 0.3);
    let pr_same = precision_recall(&r, &same, 16, PR_K).unwrap();
    let pr_narrow = precision_recall(&r, &narrow, 16, PR_K).unwrap();
    assert!(
        pr_same.precision > 0.6 && pr_same.recall > 0.6,
        "{pr_same:?}"
    );
    assert!(
        pr_narrow.precision > 0.95 && pr_narrow.recall < 0.2,
        "{pr_narrow:?}"
    );
}

#[test]
fn precision_recall_rejects_bad_inputs() {
    let a = line(0..10);
    assert!(precision_recall(&a, &[], 2, 3).is_err());
    assert!(precision_recall(&a, &a[..5], 2, 3).is_err());
    assert!(
        precision_recall(&a, &line(0..3), 2, 3).is_err(),
        "3 points, k = 3"
    );
    let mut b = a.clone();
    b[3] = f32::INFINITY;
    let e = precision_recall(&a, &b, 2, 3).unwrap_err().to_string();
    assert!(e.contains("vector 1") && e.contains("sample"), "{e}");
}

#[test]
fn prd_curve_and_scores_on_known_histograms() {
    // Equal histograms: the curve reaches (1, 1).
    let h = [0.25, 0.25, 0.5];
    let (p, r) = prd_curve(&h, &h, 1001).unwrap();
    let best = p.iter().zip(&r).map(|(a, b)| a.min(*b)).fold(0.0, f64::max);
    assert!(best > 0.99);
    // Disjoint supports: precision and recall are 0 everywhere.
    let (p, r) = prd_curve(&[1.0, 0.0], &[0.0, 1.0], 1001).unwrap();
    assert!(p.iter().chain(&r).all(|v| *v == 0.0));
    assert!(prd_curve(&h, &h, 2).is_err());

    // Clusters: the same two blobs score ~1/1; samples from one blob only keep precision high
    // (F1/8) and lose recall (F8).
    let mut rng = Rng::new(9);
    let blob = |rng: &mut Rng, n: usize, c: f64| -> Vec<f32> {
        (0..n * 4)
            .map(|_| (c + 0.1 * rng.normal()) as f32)
            .collect()
    };
    let mut reference = blob(&mut rng, 100, 0.0);
    reference.extend(blob(&mut rng, 100, 5.0));
    let mut same = blob(&mut rng, 100, 0.0);
    same.extend(blob(&mut rng, 100, 5.0));
    let one = blob(&mut rng, 200, 0.0);
    let opts = PrdOptions {
        runs: 3,
        ..PrdOptions::default()
    };
    let s = prd(&reference, &same, 4, &opts).unwrap();
    assert!(s.f_8 > 0.8 && s.f_1_8 > 0.8, "{s:?}");
    let o = prd(&reference, &one, 4, &opts).unwrap();
    assert!(o.f_1_8 > 0.9 && o.f_8 < 0.6, "{o:?}");
    let e = prd(&reference, &one[..40], 4, &opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("equal size"), "{e}");
}
