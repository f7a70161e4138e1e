mod common;

use common::Rng;
use daed_eval::ssim::{
    batch_mean_std, gaussian_window, ms_ssim, ms_ssim_plan, ssim, MsSsimOptions, SsimOptions,
};

fn noisy_series(
    rng: &mut Rng,
    c: usize,
    h: usize,
    w: usize,
    sigmas: &[f64],
) -> (Vec<f32>, Vec<Vec<f32>>) {
    let x = rng.smooth_image(c, h, w);
    let noise: Vec<f64> = (0..x.len()).map(|_| rng.normal()).collect();
    let ys = sigmas.iter().map(|&s| Rng::add(&x, &noise, s)).collect();
    (x, ys)
}

#[test]
fn ssim_of_identical_images_is_one() {
    let mut rng = Rng::new(1);
    let x = rng.image(3 * 32 * 32);
    let v = ssim(&x, &x, 3, 32, 32, &SsimOptions::default()).unwrap();
    assert!((v - 1.0).abs() < 1e-9, "{v}");
}

#[test]
fn ssim_falls_monotonically_with_noise() {
    let mut rng = Rng::new(2);
    let sigmas = [0.01, 0.03, 0.1, 0.2, 0.4, 0.8, 1.6];
    let (x, ys) = noisy_series(&mut rng, 1, 28, 28, &sigmas);
    let vals: Vec<f64> = ys
        .iter()
        .map(|y| ssim(&x, y, 1, 28, 28, &SsimOptions::default()).unwrap())
        .collect();
    assert!(vals[0] < 1.0 && vals[0] > 0.9, "{vals:?}");
    for p in vals.windows(2) {
        assert!(p[1] < p[0], "not decreasing: {vals:?}");
    }
}

/// Direct per-window SSIM: weighted means, variances around the mean and covariance with the 2-D
/// Gaussian weights, for every valid window position.
fn naive_ssim(a: &[f32], b: &[f32], c: usize, h: usize, w: usize, o: &SsimOptions) -> f64 {
    let k = o.win_size;
    let g = gaussian_window(k, o.sigma);
    let (c1, c2) = ((o.k1 * o.data_range).powi(2), (o.k2 * o.data_range).powi(2));
    let mut total = 0.0;
    for ch in 0..c {
        let px = |v: &[f32], i: usize, j: usize| v[ch * h * w + i * w + j] as f64 - o.data_min;
        let mut sum = 0.0;
        let mut count = 0;
        for i0 in 0..=h - k {
            for j0 in 0..=w - k {
                let (mut mx, mut my) = (0.0, 0.0);
                for di in 0..k {
                    for dj in 0..k {
                        let wt = g[di] * g[dj];
                        mx += wt * px(a, i0 + di, j0 + dj);
                        my += wt * px(b, i0 + di, j0 + dj);
                    }
                }
                let (mut vx, mut vy, mut cxy) = (0.0, 0.0, 0.0);
                for di in 0..k {
                    for dj in 0..k {
                        let wt = g[di] * g[dj];
                        let dx = px(a, i0 + di, j0 + dj) - mx;
                        let dy = px(b, i0 + di, j0 + dj) - my;
                        vx += wt * dx * dx;
                        vy += wt * dy * dy;
                        cxy += wt * dx * dy;
                    }
                }
                let l = (2.0 * mx * my + c1) / (mx * mx + my * my + c1);
                let cs = (2.0 * cxy + c2) / (vx + vy + c2);
                sum += l * cs;
                count += 1;
            }
        }
        total += sum / count as f64;
    }
    total / c as f64
}

#[test]
fn ssim_matches_naive_per_window_computation() {
    let mut rng = Rng::new(3);
    for c in [1, 2] {
        let a = rng.image(c * 20 * 20);
        let b: Vec<f32> = a
            .iter()
            .map(|v| 0.6 * v + 0.4 * (rng.uniform() as f32 * 2.0 - 1.0))
            .collect();
        let o = SsimOptions::default();
        let fast = ssim(&a, &b, c, 20, 20, &o).unwrap();
        let slow = naive_ssim(&a, &b, c, 20, 20, &o);
        assert!((fast - slow).abs() < 1e-9, "c={c}: {fast} vs {slow}");
        // Non-square, other window and range.
        let o = SsimOptions {
            win_size: 7,
            sigma: 1.0,
            data_range: 1.0,
            data_min: 0.0,
            ..SsimOptions::default()
        };
        let (a, b) = (rng.image(c * 13 * 17), rng.image(c * 13 * 17));
        let fast = ssim(&a, &b, c, 13, 17, &o).unwrap();
        let slow = naive_ssim(&a, &b, c, 13, 17, &o);
        assert!((fast - slow).abs() < 1e-9, "c={c}: {fast} vs {slow}");
    }
}

#[test]
fn default_options_equal_the_standard_on_unit_range_images() {
    // [-1, 1] with the defaults == [0, 1] with data_range 1, no shift == [0, 255] with range 255.
    let mut rng = Rng::new(8);
    let (x, y) = (rng.smooth_image(3, 32, 32), rng.image(3 * 32 * 32));
    let y: Vec<f32> = x.iter().zip(&y).map(|(a, b)| 0.7 * a + 0.3 * b).collect();
    let unit = |v: &[f32], k: f32| v.iter().map(|p| (p + 1.0) / 2.0 * k).collect::<Vec<f32>>();
    let raw = |range: f64| SsimOptions {
        data_range: range,
        data_min: 0.0,
        ..SsimOptions::default()
    };
    let d = SsimOptions::default();
    let s = ssim(&x, &y, 3, 32, 32, &d).unwrap();
    let s01 = ssim(&unit(&x, 1.0), &unit(&y, 1.0), 3, 32, 32, &raw(1.0)).unwrap();
    let s255 = ssim(&unit(&x, 255.0), &unit(&y, 255.0), 3, 32, 32, &raw(255.0)).unwrap();
    assert!(
        (s - s01).abs() < 1e-6 && (s - s255).abs() < 1e-6,
        "{s} {s01} {s255}"
    );
    let ms = |o: SsimOptions| MsSsimOptions {
        ssim: o,
        scales: None,
    };
    let m = ms_ssim(&x, &y, 3, 32, 32, &ms(d.clone())).unwrap();
    let m01 = ms_ssim(&unit(&x, 1.0), &unit(&y, 1.0), 3, 32, 32, &ms(raw(1.0))).unwrap();
    assert!((m - m01).abs() < 1e-6, "{m} {m01}");
    // A small brightness shift of a mid-grey image barely matters once shifted to [0, 2]; on the
    // raw zero-centred values the luminance term collapses.
    let z = rng.image(28 * 28);
    let zs: Vec<f32> = z.iter().map(|v| v + 0.15).collect();
    let shifted = ssim(&z, &zs, 1, 28, 28, &d).unwrap();
    let centred = ssim(&z, &zs, 1, 28, 28, &raw(2.0)).unwrap();
    assert!(shifted > 0.98 && centred < 0.5, "{shifted} {centred}");
}

#[test]
fn ssim_hand_checked_constant_images_and_symmetry() {
    // Constant images: all variances are 0 so cs = C2 / C2 = 1; the luminance term is exact on the
    // values shifted to [0, 2] (0.5 -> 1.5, -0.5 -> 0.5).
    let (a, b) = (vec![0.5f32; 12 * 12], vec![-0.5f32; 12 * 12]);
    let c1 = (0.01f64 * 2.0).powi(2);
    let want = (2.0 * 1.5 * 0.5 + c1) / (2.25 + 0.25 + c1);
    let v = ssim(&a, &b, 1, 12, 12, &SsimOptions::default()).unwrap();
    assert!((v - want).abs() < 1e-12, "{v} vs {want}");
    // Symmetry on random images.
    let mut rng = Rng::new(4);
    let (x, y) = (rng.image(3 * 16 * 16), rng.image(3 * 16 * 16));
    let o = SsimOptions::default();
    let (xy, yx) = (
        ssim(&x, &y, 3, 16, 16, &o).unwrap(),
        ssim(&y, &x, 3, 16, 16, &o).unwrap(),
    );
    assert_eq!(xy, yx);
    let mo = MsSsimOptions::default();
    let (xy, yx) = (
        ms_ssim(
            &x,
            &y,
            3,
            16,
            16,
            &MsSsimOptions {
                scales: Some(2),
                ..mo.clone()
            },
        )
        .unwrap(),
        ms_ssim(
            &y,
            &x,
            3,
            16,
            16,
            &MsSsimOptions {
                scales: Some(2),
                ..mo
            },
        )
        .unwrap(),
    );
    assert_eq!(xy, yx);
}

#[test]
fn ssim_rejects_bad_input() {
    let x = vec![0f32; 5 * 5];
    let e = ssim(&x, &x, 1, 5, 5, &SsimOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("5x5") && e.contains("11-px"), "{e}");
    let e = ssim(&x, &x[..24], 1, 5, 5, &SsimOptions::default()).unwrap_err();
    assert!(e.to_string().contains("24"), "{e}");
    let even = SsimOptions {
        win_size: 4,
        ..SsimOptions::default()
    };
    assert!(ssim(&x, &x, 1, 5, 5, &even).is_err());
    let zero = SsimOptions {
        data_range: 0.0,
        ..SsimOptions::default()
    };
    assert!(ssim(&x, &x, 1, 5, 5, &zero).is_err());
    assert!(ssim(&[], &[], 0, 5, 5, &SsimOptions::default()).is_err());
}

#[test]
fn ms_ssim_plans_for_small_images() {
    let o = MsSsimOptions::default();
    let p = |s: usize| ms_ssim_plan(s, s, &o).unwrap();
    assert_eq!((p(28).scales, p(28).win_size), (3, 7));
    assert_eq!((p(32).scales, p(32).win_size), (3, 7));
    assert_eq!((p(64).scales, p(64).win_size), (3, 11));
    assert_eq!((p(128).scales, p(128).win_size), (4, 11));
    assert_eq!((p(161).scales, p(161).win_size), (5, 11));
    assert_eq!(p(256).weights, daed_eval::ssim::MS_SSIM_WEIGHTS.to_vec());
    for s in [28, 32, 64, 128] {
        let sum: f64 = p(s).weights.iter().sum();
        assert!((sum - 1.0).abs() < 1e-12);
    }
    let w = p(28).weights;
    assert!((w[0] - 0.0448 / 0.6305).abs() < 1e-12 && (w[2] - 0.3001 / 0.6305).abs() < 1e-12);
    // Explicit scale counts shrink the window to fit.
    let two = MsSsimOptions {
        scales: Some(2),
        ..o.clone()
    };
    assert_eq!(ms_ssim_plan(28, 28, &two).unwrap().win_size, 11);
    let five = MsSsimOptions {
        scales: Some(5),
        ..o.clone()
    };
    assert!(ms_ssim_plan(28, 28, &five).is_err());
    let six = MsSsimOptions {
        scales: Some(6),
        ..o
    };
    assert!(ms_ssim_plan(256, 256, &six).is_err());
}

#[test]
fn ms_ssim_identical_is_one_and_falls_with_noise() {
    let mut rng = Rng::new(5);
    let sigmas = [0.01, 0.05, 0.15, 0.4, 1.0];
    for (c, s) in [(1, 28), (3, 32), (3, 64), (1, 27)] {
        let (x, ys) = noisy_series(&mut rng, c, s, s, &sigmas);
        let o = MsSsimOptions::default();
        let one = ms_ssim(&x, &x, c, s, s, &o).unwrap();
        assert!((one - 1.0).abs() < 1e-9, "{s} px: {one}");
        let vals: Vec<f64> = ys
            .iter()
            .map(|y| ms_ssim(&x, y, c, s, s, &o).unwrap())
            .collect();
        assert!(vals[0] > 0.9, "{s} px: {vals:?}");
        for p in vals.windows(2) {
            assert!(p[1] < p[0], "{s} px not decreasing: {vals:?}");
        }
    }
}

#[test]
fn ms_ssim_one_scale_is_relu_ssim_and_small_images_error() {
    let mut rng = Rng::new(6);
    let x = rng.image(15 * 15);
    let y: Vec<f32> = x.iter().map(|v| v + 0.3 * rng.uniform() as f32).collect();
    let one = MsSsimOptions {
        scales: Some(1),
        ..MsSsimOptions::default()
    };
    let m = ms_ssim(&x, &y, 1, 15, 15, &one).unwrap();
    let s = ssim(&x, &y, 1, 15, 15, &SsimOptions::default()).unwrap();
    assert!(s > 0.0 && (m - s).abs() < 1e-12, "{m} vs {s}");
    let z = vec![0f32; 25];
    let e = ms_ssim(&z, &z, 1, 5, 5, &MsSsimOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("5x5") && e.contains("too small"), "{e}");
    let e = ms_ssim(&z, &z, 1, 5, 5, &MsSsimOptions::default());
    assert!(e.is_err());
}

#[test]
fn batch_mean_std_collects_per_image_values() {
    let a: Vec<f32> = (0..8).map(|i| i as f32).collect();
    let b = vec![0f32; 8];
    let st = batch_mean_std(&a, &b, 1, 2, 2, |x, _| Ok(x.iter().sum::<f32>() as f64)).unwrap();
    assert_eq!(st.values, vec![6.0, 22.0]);
    assert_eq!((st.mean, st.std), (14.0, 8.0));
    assert!(batch_mean_std(&a, &b[..4], 1, 2, 2, |_, _| Ok(0.0)).is_err());
    assert!(batch_mean_std(&a[..6], &b[..6], 1, 2, 2, |_, _| Ok(0.0)).is_err());
    assert!(batch_mean_std(&[], &[], 1, 2, 2, |_, _| Ok(0.0)).is_err());
    let mut rng = Rng::new(7);
    let x = rng.image(4 * 28 * 28);
    let o = MsSsimOptions::default();
    let st = batch_mean_std(&x, &x, 1, 28, 28, |p, q| ms_ssim(p, q, 1, 28, 28, &o)).unwrap();
    assert_eq!(st.values.len(), 4);
    assert!((st.mean - 1.0).abs() < 1e-9 && st.std < 1e-9);
}
