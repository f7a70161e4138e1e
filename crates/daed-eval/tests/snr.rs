mod common;

use daed_eval::snr::{image_powers, snr_curve, write_snr_outputs, SnrSummary};
use daed_io::images::ImageSet;
use std::collections::BTreeMap;

/// DDPM's linear schedule: beta from 1e-4 to 0.02 over `t` steps, cumulative product of 1 - beta.
fn linear_abar(t: usize) -> Vec<f64> {
    let mut acc = 1.0;
    (0..t)
        .map(|i| {
            let beta = 1e-4 + (0.02 - 1e-4) * i as f64 / (t - 1) as f64;
            acc *= 1.0 - beta;
            acc
        })
        .collect()
}

#[test]
fn synthetic_powers_match_the_closed_form() {
    // Pixel 51 maps to 51/127.5 - 1 = -0.6 (power 0.36); pixel 255 maps to 1 (power 1).
    let mut pixels = vec![51u8; 3 * 16];
    pixels.extend(vec![255u8; 16]);
    let set = ImageSet::new(1, 4, 4, pixels, None).unwrap();
    let p = image_powers(&set);
    assert_eq!(p.len(), 4);
    for v in &p[..3] {
        assert!((v - 0.36).abs() < 1e-15, "{v}");
    }
    assert_eq!(p[3], 1.0);
    let abar = linear_abar(1000);
    let curve = snr_curve("synthetic", &p, &abar).unwrap();
    assert_eq!(curve.t, (1..=1000).collect::<Vec<_>>());
    assert_eq!(curve.n_images, 4);
    let lp = [0.36f64.ln(), 0.36f64.ln(), 0.36f64.ln(), 0.0];
    let mlp = lp.iter().sum::<f64>() / 4.0;
    let slp = (lp.iter().map(|v| (v - mlp).powi(2)).sum::<f64>() / 4.0).sqrt();
    for t in [1usize, 2, 10, 100, 500, 999, 1000] {
        let a = abar[t - 1];
        let per_image: Vec<f64> = p.iter().map(|pw| (a * pw / (1.0 - a)).ln()).collect();
        let direct = per_image.iter().sum::<f64>() / 4.0;
        assert!((curve.mean[t - 1] - direct).abs() < 1e-12, "t={t}");
        assert!((curve.mean[t - 1] - (mlp + (a / (1.0 - a)).ln())).abs() < 1e-12);
        assert!((curve.std[t - 1] - slp).abs() < 1e-12);
        if t > 1 {
            let d = curve.mean[t - 1] - curve.mean[t - 2];
            assert!((curve.delta[t - 1] - d).abs() < 1e-12);
        }
    }
    assert!(curve.delta[0].is_nan());
    for d in &curve.delta[1..] {
        assert!(*d < 0.0);
    }
}

#[test]
fn zero_crossing_of_a_hand_built_schedule() {
    // With P = 1, log-SNR = ln(abar / (1 - abar)): ln 9, ln(7/3), 0, ln(3/7), ln(1/9).
    let c = snr_curve("hand", &[1.0, 1.0], &[0.9, 0.7, 0.5, 0.3, 0.1]).unwrap();
    let s = c.summary();
    assert_eq!(s.zero_crossing_t, Some(4));
    assert_eq!(s.zero_crossing_fraction, Some(0.8));
    assert_eq!(s.t_10pct, 1);
    assert!((s.log_snr_at_10pct - 9f64.ln()).abs() < 1e-12);
    assert_eq!(c.std, vec![0.0; 5]);
    let never = snr_curve("never", &[1.0], &[0.9, 0.8]).unwrap().summary();
    assert_eq!(
        (never.zero_crossing_t, never.zero_crossing_fraction),
        (None, None)
    );
}

#[test]
fn bad_inputs_are_errors() {
    assert!(snr_curve("x", &[], &[0.5]).is_err());
    assert!(snr_curve("x", &[1.0], &[]).is_err());
    let e = snr_curve("x", &[1.0, 0.0], &[0.5]).unwrap_err().to_string();
    assert!(e.contains("image 1") && e.contains("power 0"), "{e}");
    let e = snr_curve("x", &[1.0], &[0.5, 1.0]).unwrap_err().to_string();
    assert!(e.contains("t=2"), "{e}");
    assert!(snr_curve("x", &[1.0], &[0.0]).is_err());
    assert!(snr_curve("x", &[f64::NAN], &[0.5]).is_err());
    let dir = common::temp_dir("snr-bad");
    assert!(write_snr_outputs(&dir, &[]).is_err());
    let c = snr_curve("same", &[1.0], &[0.5]).unwrap();
    assert!(write_snr_outputs(&dir, &[c.clone(), c]).is_err());
}

#[test]
fn outputs_csv_png_and_summary() {
    let dir = common::temp_dir("snr-out");
    let a = snr_curve("fmnist linear", &[0.4, 0.6, 0.5], &linear_abar(50)).unwrap();
    let b = snr_curve("cifar linear", &[0.2, 0.3], &linear_abar(70)).unwrap();
    write_snr_outputs(&dir, &[a, b]).unwrap();
    let csv = std::fs::read_to_string(dir.join("snr.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "label,t,mean,std,delta");
    assert_eq!(lines.len(), 1 + 50 + 70);
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("fmnist linear,"))
            .count(),
        50
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("cifar linear,"))
            .count(),
        70
    );
    assert!(lines[1].starts_with("fmnist linear,1,") && lines[1].ends_with(','));
    let f: Vec<&str> = lines[2].split(',').collect();
    assert_eq!(f.len(), 5);
    assert!(f[2].parse::<f64>().is_ok() && f[4].parse::<f64>().unwrap() < 0.0);
    let json = std::fs::read_to_string(dir.join("summary.json")).unwrap();
    let s: BTreeMap<String, SnrSummary> = serde_json::from_str(&json).unwrap();
    assert_eq!(s.len(), 2);
    assert_eq!(s["fmnist linear"].total_steps, 50);
    assert_eq!(s["cifar linear"].t_10pct, 7);
    let png = std::fs::read(dir.join("snr.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let _ = std::fs::remove_dir_all(&dir);
}
