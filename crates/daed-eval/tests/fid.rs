//! FID numerics: statistics, the Fréchet distance against closed forms, the stats file format,
//! and bad inputs.
mod common;

use std::time::Instant;

use common::Rng;
use daed_eval::fid::{frechet_distance, GaussianStats, StatsAccumulator};
use daed_eval::linalg::{pivoted_cholesky, symmetric_eigenvalues};

fn gaussian_features(rng: &mut Rng, n: usize, d: usize, scale: f64, shift: f64) -> Vec<f32> {
    // Correlated features: x_j = shift + scale * (z_j + 0.5 z_{j-1}).
    let mut out = Vec::with_capacity(n * d);
    for _ in 0..n {
        let z: Vec<f64> = (0..d).map(|_| rng.normal()).collect();
        for j in 0..d {
            let prev = if j > 0 { z[j - 1] } else { 0.0 };
            out.push((shift + scale * (z[j] + 0.5 * prev)) as f32);
        }
    }
    out
}

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("daed-eval-fid-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn fid_of_a_set_against_itself_is_zero() {
    let mut rng = Rng::new(1);
    let f = gaussian_features(&mut rng, 500, 64, 1.0, 3.0);
    let s = GaussianStats::from_features(&f, 64).unwrap();
    let d = frechet_distance(&s, &s).unwrap();
    assert!(d.value.abs() < 1e-6, "{d:?}");
    assert_eq!(d.eps_added, None);
    assert_eq!(d.ranks, [64, 64]);
}

#[test]
fn singular_covariances_need_no_offset() {
    // 40 vectors in 64 dimensions: rank 39. The exact distance of a set to itself is 0, and
    // pytorch-fid (scipy's sqrtm is finite here) adds nothing.
    let mut rng = Rng::new(2);
    let f = gaussian_features(&mut rng, 40, 64, 1.0, 0.0);
    let s = GaussianStats::from_features(&f, 64).unwrap();
    let d = frechet_distance(&s, &s).unwrap();
    assert_eq!(d.eps_added, None);
    assert_eq!(d.ranks, [39, 39]);
    assert!(d.value.abs() < 1e-6, "{d:?}");
    assert_eq!(d.value, d.value_without_eps);
}

/// Mean and covariance (divisor n - 1, as `np.cov`) in f64.
fn stats_f64(rows: &[Vec<f64>]) -> GaussianStats {
    let (n, d) = (rows.len(), rows[0].len());
    let mu: Vec<f64> = (0..d)
        .map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / n as f64)
        .collect();
    let mut sigma = vec![0.0; d * d];
    for r in rows {
        for i in 0..d {
            for j in 0..d {
                sigma[i * d + j] += (r[i] - mu[i]) * (r[j] - mu[j]) / (n as f64 - 1.0);
            }
        }
    }
    GaussianStats {
        dim: d,
        n,
        mu,
        sigma,
    }
}

#[test]
fn fid_equals_pytorch_fids_own_function() {
    // fixtures/fid_reference.json: pytorch-fid 0.3.0's calculate_frechet_distance on small sets,
    // two with singular covariances (where adding 1e-6 I would move the value by ~0.5%).
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/fid_reference.json"
    ))
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let rows =
        |x: &serde_json::Value| -> Vec<Vec<f64>> { serde_json::from_value(x.clone()).unwrap() };
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for c in cases {
        let (a, b) = (stats_f64(&rows(&c["a"])), stats_f64(&rows(&c["b"])));
        let want = c["fid"].as_f64().unwrap();
        let got = frechet_distance(&a, &b).unwrap();
        let rel = (got.value - want).abs() / want.abs();
        assert!(
            rel < 1e-5,
            "{}: daed {} pytorch-fid {want}",
            c["name"],
            got.value
        );
        assert_eq!(got.eps_added, None, "{}", c["name"]);
    }
}

#[test]
fn streaming_statistics_equal_two_pass_ones() {
    let mut rng = Rng::new(3);
    let (n, d) = (301, 17);
    let f = gaussian_features(&mut rng, n, d, 0.1, 1000.0);
    let mut acc = StatsAccumulator::new(d);
    acc.add(&f[..100 * d]).unwrap();
    acc.add(&f[100 * d..250 * d]).unwrap();
    acc.add(&f[250 * d..]).unwrap();
    let s = acc.finish().unwrap();
    assert_eq!(s.n, n);
    let x: Vec<f64> = f.iter().map(|&v| v as f64).collect();
    let mu: Vec<f64> = (0..d)
        .map(|j| (0..n).map(|i| x[i * d + j]).sum::<f64>() / n as f64)
        .collect();
    for j in 0..d {
        assert!((s.mu[j] - mu[j]).abs() < 1e-9);
        for k in 0..d {
            let c = (0..n)
                .map(|i| (x[i * d + j] - mu[j]) * (x[i * d + k] - mu[k]))
                .sum::<f64>()
                / (n - 1) as f64;
            assert!((s.sigma[j * d + k] - c).abs() < 1e-9, "{j} {k}");
        }
    }
}

#[test]
fn two_dimensional_gaussians_match_the_closed_form() {
    // tr sqrt(S1 S2) = sqrt(tr(S1 S2) + 2 sqrt(det S1 det S2)) in 2D, even when they do not commute.
    let s1 = GaussianStats {
        dim: 2,
        n: 0,
        mu: vec![1.0, -2.0],
        sigma: vec![2.0, 0.7, 0.7, 1.0],
    };
    let s2 = GaussianStats {
        dim: 2,
        n: 0,
        mu: vec![0.5, 0.0],
        sigma: vec![0.5, -0.2, -0.2, 3.0],
    };
    let tr12 = 2.0 * 0.5 + 0.7 * -0.2 + 0.7 * -0.2 + 1.0 * 3.0;
    let det1: f64 = 2.0 * 1.0 - 0.49;
    let det2 = 0.5 * 3.0 - 0.04;
    let tr_sqrt = (tr12 + 2.0 * (det1 * det2).sqrt()).sqrt();
    let want = 0.25 + 4.0 + 3.0 + 3.5 - 2.0 * tr_sqrt;
    let d = frechet_distance(&s1, &s2).unwrap();
    assert!((d.value - want).abs() < 1e-12, "{} vs {want}", d.value);
    assert!((d.mean_term - 4.25).abs() < 1e-15);
}

#[test]
fn dense_2048_gaussians_match_the_closed_form_in_seconds() {
    // S1 = Q diag(a) Qᵀ, S2 = Q diag(b) Qᵀ with a Householder reflection Q: FD = |mu1 - mu2|² +
    // Σ (sqrt a_i - sqrt b_i)².
    let d = 2048;
    let mut rng = Rng::new(4);
    let a: Vec<f64> = (0..d).map(|_| 0.01 + rng.uniform()).collect();
    let b: Vec<f64> = (0..d).map(|_| 0.01 + 2.0 * rng.uniform()).collect();
    let mut u: Vec<f64> = (0..d).map(|_| rng.normal()).collect();
    let nu = u.iter().map(|x| x * x).sum::<f64>().sqrt();
    u.iter_mut().for_each(|x| *x /= nu);
    // (I - 2uuᵀ) D (I - 2uuᵀ) = D - 2 u (Du)ᵀ - 2 (Du) uᵀ + 4 (uᵀDu) u uᵀ
    let rot = |diag: &[f64]| {
        let du: Vec<f64> = (0..d).map(|i| diag[i] * u[i]).collect();
        let udu: f64 = (0..d).map(|i| u[i] * du[i]).sum();
        let mut s = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..d {
                s[i * d + j] = -2.0 * u[i] * du[j] - 2.0 * du[i] * u[j] + 4.0 * udu * u[i] * u[j];
            }
            s[i * d + i] += diag[i];
        }
        s
    };
    let mu1: Vec<f64> = (0..d).map(|_| rng.normal()).collect();
    let mu2: Vec<f64> = (0..d).map(|_| rng.normal()).collect();
    let s1 = GaussianStats {
        dim: d,
        n: 0,
        mu: mu1.clone(),
        sigma: rot(&a),
    };
    let s2 = GaussianStats {
        dim: d,
        n: 0,
        mu: mu2.clone(),
        sigma: rot(&b),
    };
    let want: f64 = mu1
        .iter()
        .zip(&mu2)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        + a.iter()
            .zip(&b)
            .map(|(x, y)| (x.sqrt() - y.sqrt()).powi(2))
            .sum::<f64>();
    let t = Instant::now();
    let got = frechet_distance(&s1, &s2).unwrap();
    let secs = t.elapsed().as_secs_f64();
    eprintln!(
        "2048-d Fréchet distance: {:.9} (closed form {want:.9}) in {secs:.2} s",
        got.value
    );
    assert_eq!(got.eps_added, None);
    assert!(
        (got.value - want).abs() < 1e-6 * want.max(1.0),
        "{got:?} vs {want}"
    );
}

#[test]
fn eigenvalues_and_cholesky_are_right() {
    // A tridiagonal matrix with known spectrum: 2 - 2 cos(k pi / (n + 1)).
    let n = 50;
    let mut m = vec![0.0; n * n];
    for i in 0..n {
        m[i * n + i] = 2.0;
        if i + 1 < n {
            m[i * n + i + 1] = -1.0;
            m[(i + 1) * n + i] = -1.0;
        }
    }
    let ev = symmetric_eigenvalues(m.clone(), n).unwrap();
    for (k, e) in ev.iter().enumerate() {
        let want = 2.0 - 2.0 * ((k + 1) as f64 * std::f64::consts::PI / (n + 1) as f64).cos();
        assert!((e - want).abs() < 1e-12, "{k}: {e} vs {want}");
    }
    let ch = pivoted_cholesky(&m, n).unwrap();
    assert_eq!(ch.rank, n);
    for i in 0..n {
        for j in 0..n {
            let v: f64 = (0..n).map(|k| ch.l[i * n + k] * ch.l[j * n + k]).sum();
            assert!((v - m[i * n + j]).abs() < 1e-12);
        }
    }
    // A cluster of 500 equal eigenvalues far below the norm (a low-rank covariance plus a small
    // diagonal, as with pytorch-fid's offset) once stalled a relative convergence test.
    let (n, k) = (600, 100);
    let mut rng = Rng::new(11);
    let b: Vec<f64> = (0..n * k).map(|_| rng.uniform() - 0.5).collect();
    let mut s = daed_eval::linalg::matmul_strided(n, k, n, &b, 1, n, &b, n, 1);
    for i in 0..n {
        s[i * n + i] += 0.1;
    }
    let trace: f64 = (0..n).map(|i| s[i * n + i]).sum();
    let ev = symmetric_eigenvalues(s, n).unwrap();
    assert!((ev.iter().sum::<f64>() - trace).abs() < 1e-9 * trace);
    assert!(
        ev[..n - k].iter().all(|e| (e - 0.1).abs() < 1e-11),
        "{}",
        ev[0]
    );
    assert!(symmetric_eigenvalues(vec![f64::NAN; 4], 2).is_err());
    assert!(symmetric_eigenvalues(vec![0.0; 3], 2).is_err());
}

#[test]
fn stats_files_round_trip_and_bad_ones_are_clear_errors() {
    let dir = tmp("npz");
    let mut rng = Rng::new(5);
    let f = gaussian_features(&mut rng, 100, 8, 1.0, 0.0);
    let s = GaussianStats::from_features(&f, 8).unwrap();
    let sp = GaussianStats::from_features(&f[..50 * 8], 8).unwrap();
    let path = dir.join("ref.npz");
    GaussianStats::write_npz(&path, &s, Some(&sp)).unwrap();
    let back = GaussianStats::read_npz(&path, false).unwrap();
    assert_eq!(back, s);
    assert_eq!(GaussianStats::read_npz(&path, true).unwrap(), sp);

    // A file without `mu`.
    let other = dir.join("other.npz");
    daed_io::npz::write_npz(
        &other,
        &[("arr_0", &daed_io::npz::NpyArray::f32(&[2], vec![1.0, 2.0]))],
    )
    .unwrap();
    let e = GaussianStats::read_npz(&other, false)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no `mu` array") && e.contains("other.npz"),
        "{e}"
    );
    // Mismatched dimensions.
    let small = GaussianStats::from_features(&f[..100 * 4], 4).unwrap();
    let e = frechet_distance(&s, &small).unwrap_err().to_string();
    assert!(e.contains("different dimensions"), "{e}");
}

#[test]
fn bad_features_are_clear_errors() {
    let mut acc = StatsAccumulator::new(4);
    let e = acc.add(&[1.0, 2.0, 3.0]).unwrap_err().to_string();
    assert!(e.contains("whole number"), "{e}");
    let e = acc
        .add(&[1.0, 2.0, 3.0, 4.0, 1.0, f32::NAN, 0.0, 0.0])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("feature 1 of vector 1") && e.contains("NaN"),
        "{e}"
    );
    let e = StatsAccumulator::new(4).finish().unwrap_err().to_string();
    assert!(e.contains("at least 2"), "{e}");
    let e = GaussianStats::from_features(&[], 4)
        .unwrap_err()
        .to_string();
    assert!(e.contains("at least 2"), "{e}");
}
