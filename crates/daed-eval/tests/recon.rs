mod common;

use common::Rng;
use daed_eval::recon::{
    recon_csv, recon_point, recon_summary, write_recon_outputs, ReconPoint, ReconSummary,
};
use std::collections::BTreeMap;

fn point(dataset: &str, t: usize, mae: f64, ms: f64) -> ReconPoint {
    ReconPoint {
        dataset: dataset.into(),
        t,
        mae_mean: mae,
        mae_std: 0.01,
        msssim_mean: ms,
        msssim_std: 0.02,
    }
}

#[test]
fn identical_reconstructions_are_perfect() {
    let mut rng = Rng::new(11);
    let x = rng.image(5 * 28 * 28);
    let p = recon_point("fashion-mnist", 10, &x, &x, 1, 28, 28).unwrap();
    assert_eq!((p.dataset.as_str(), p.t), ("fashion-mnist", 10));
    assert_eq!((p.mae_mean, p.mae_std), (0.0, 0.0));
    assert!((p.msssim_mean - 1.0).abs() < 1e-9 && p.msssim_std < 1e-9);
    let y = rng.image(2 * 3 * 32 * 32);
    let p = recon_point("cifar10", 1, &y, &y, 3, 32, 32).unwrap();
    assert!((p.msssim_mean - 1.0).abs() < 1e-9);
}

#[test]
fn mae_is_on_the_unit_pixel_scale() {
    // Every pixel off by 0.2 on [-1, 1] is 0.1 on [0, 1]; the second image is off by 0.4 (0.2).
    let a = vec![0f32; 2 * 28 * 28];
    let mut b = vec![0.2f32; 28 * 28];
    b.extend(vec![-0.4f32; 28 * 28]);
    let p = recon_point("d", 3, &a, &b, 1, 28, 28).unwrap();
    assert!(
        (p.mae_mean - 0.15).abs() < 1e-7 && (p.mae_std - 0.05).abs() < 1e-7,
        "{p:?}"
    );
    assert!(p.msssim_mean < 1.0);
    assert!(recon_point("d", 3, &a, &b[..10], 1, 28, 28).is_err());
    let e = recon_point("d", 3, &a[..50], &a[..50], 1, 5, 5).unwrap_err();
    assert!(e.to_string().contains("5x5"), "{e}");
}

#[test]
fn summary_thresholds_on_hand_built_points() {
    // Unsorted input: the first crossing is by t, not by position.
    let pts = vec![
        point("a", 30, 0.2, 0.7),
        point("a", 10, 0.05, 0.95),
        point("a", 20, 0.11, 0.92),
        point("a", 25, 0.09, 0.85),
        point("b", 10, 0.02, 0.99),
        point("b", 20, 0.10, 0.90),
    ];
    let s = recon_summary(&pts, 100);
    let want_a = ReconSummary {
        first_t_mae_above_0_1: Some(20),
        first_t_msssim_below_0_9: Some(25),
        total_steps: 100,
    };
    assert_eq!(s["a"], want_a);
    // Exactly at the thresholds does not count.
    assert_eq!(s["b"].first_t_mae_above_0_1, None);
    assert_eq!(s["b"].first_t_msssim_below_0_9, None);
}

#[test]
fn outputs_csv_png_and_summary() {
    let pts = vec![
        point("cifar10", 50, 0.12, 0.85),
        point("fashion-mnist", 10, 0.03, 0.97),
        point("fashion-mnist", 50, 0.08, 0.93),
        point("cifar10", 10, 0.05, 0.95),
    ];
    let csv = recon_csv(&pts);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "# mae on [0,1] pixel scale (|x0 - recon| / 2 for images in [-1,1]); ms-ssim of the images on [0,1] (data_range 1)");
    assert_eq!(
        lines[1],
        "dataset,t,mae_mean,mae_std,msssim_mean,msssim_std"
    );
    assert_eq!(lines.len(), 6);
    assert!(lines[2].starts_with("cifar10,10,0.05,"));
    assert!(lines[3].starts_with("cifar10,50,"));
    let dir = common::temp_dir("recon-out");
    write_recon_outputs(&dir, &pts, 1000).unwrap();
    assert_eq!(std::fs::read_to_string(dir.join("recon.csv")).unwrap(), csv);
    let json = std::fs::read_to_string(dir.join("summary.json")).unwrap();
    let s: BTreeMap<String, ReconSummary> = serde_json::from_str(&json).unwrap();
    assert_eq!(s["cifar10"].first_t_mae_above_0_1, Some(50));
    assert_eq!(s["fashion-mnist"].first_t_msssim_below_0_9, None);
    assert!(json.contains("null"));
    assert_eq!(&std::fs::read(dir.join("recon.png")).unwrap()[1..4], b"PNG");
    // Bad inputs.
    assert!(write_recon_outputs(&dir, &[], 10).is_err());
    assert!(write_recon_outputs(&dir, &pts, 0).is_err());
    assert!(write_recon_outputs(&dir, &pts, 20).is_err());
    let dup = vec![point("a", 1, 0.0, 1.0), point("a", 1, 0.0, 1.0)];
    assert!(write_recon_outputs(&dir, &dup, 10).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
