//! The bf16 GEMM against an f64 product of the same bf16-rounded operands, in every operand
//! layout the convolution uses; skipped (with a line on stderr) on CPUs without AVX512-BF16.
use super::*;
use crate::precision::bf16_supported;

/// Round to nearest even to bf16, as `vcvtne2ps2bf16` does for normal numbers.
fn round_bf16(x: f32) -> f32 {
    let b = x.to_bits();
    let r = b.wrapping_add(0x7FFF + ((b >> 16) & 1)) & 0xFFFF_0000;
    f32::from_bits(r)
}

fn data(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
        })
        .collect()
}

/// A matrix stored row-major (`cs == 1`) or column-major (`rs == 1`).
fn stored(v: &[f32], rows: usize, cols: usize, by_cols: bool) -> (Vec<f32>, [isize; 2]) {
    if !by_cols {
        return (v.to_vec(), [cols as isize, 1]);
    }
    let mut t = vec![0.0; v.len()];
    for i in 0..rows {
        for j in 0..cols {
            t[j * rows + i] = v[i * cols + j];
        }
    }
    (t, [1, rows as isize])
}

fn mat(s: &[f32], [rs, cs]: [isize; 2]) -> Mat {
    Mat {
        ptr: s.as_ptr(),
        rs,
        cs,
    }
}

#[test]
fn bf16_gemm_is_the_product_of_the_rounded_operands() {
    if !bf16_supported() {
        eprintln!("skipped: this CPU has no AVX512-BF16");
        return;
    }
    let shapes = [
        [1, 1, 1],
        [3, 5, 2],
        [8, 32, 16],
        [9, 33, 17],
        [17, 70, 288],
        [64, 49, 1152],
        [5, 200, 3],
        [40, 7, 63],
    ];
    for (case, &[m, n, k]) in shapes.iter().enumerate() {
        let a = data(m * k, 1 + case as u64);
        let b = data(k * n, 100 + case as u64);
        let init = data(m * n, 200 + case as u64);
        let mut want = vec![0.0f64; m * n];
        let mut scale = vec![0.0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                for q in 0..k {
                    let t = round_bf16(a[i * k + q]) as f64 * round_bf16(b[q * n + j]) as f64;
                    want[i * n + j] += t;
                    scale[i * n + j] += t.abs();
                }
            }
        }
        for layout in 0..4 {
            let (sa, ra) = stored(&a, m, k, layout & 1 == 1);
            let (sb, rb) = stored(&b, k, n, layout & 2 == 2);
            for acc in [false, true] {
                let mut got = init.clone();
                matmul(&mut got, n, [m, n, k], acc, mat(&sa, ra), mat(&sb, rb), 1);
                for (e, ((g, w), s)) in got.iter().zip(&want).zip(&scale).enumerate() {
                    let w = w + if acc { init[e] as f64 } else { 0.0 };
                    assert!(
                        (*g as f64 - w).abs() <= 1e-5 * (s + 1.0),
                        "{m}x{n}x{k} layout {layout} acc {acc} [{e}]: {g} vs {w}"
                    );
                }
                let mut par = init.clone();
                crate::parallel::on_threads(3, || {
                    matmul(&mut par, n, [m, n, k], acc, mat(&sa, ra), mat(&sb, rb), 3)
                });
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&par), "{m}x{n}x{k}: threads change bits");
            }
        }
    }
}

#[test]
fn bf16_gemm_writes_only_its_rows_of_a_strided_destination() {
    if !bf16_supported() {
        eprintln!("skipped: this CPU has no AVX512-BF16");
        return;
    }
    let (m, n, k, ldd) = (3, 5, 4, 9);
    let a = data(m * k, 7);
    let b = data(k * n, 8);
    let mut dst = vec![42.0f32; (m - 1) * ldd + n + 2];
    matmul(
        &mut dst,
        ldd,
        [m, n, k],
        false,
        mat(&a, [k as isize, 1]),
        mat(&b, [n as isize, 1]),
        1,
    );
    for (e, v) in dst.iter().enumerate() {
        let inside = e / ldd < m && e % ldd < n;
        assert_eq!(*v == 42.0, !inside, "element {e}: {v}");
    }
    // The products really are bf16: an operand off the bf16 grid gives a different sum.
    let x = [1.0f32 + 1.0 / 1024.0];
    let mut y = [0.0f32];
    matmul(
        &mut y,
        1,
        [1, 1, 1],
        false,
        mat(&x, [1, 1]),
        mat(&[1.0], [1, 1]),
        1,
    );
    assert_eq!(y[0], 1.0);
}
