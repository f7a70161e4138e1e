//! Dense f64 linear algebra for the Fréchet distance: matrix products (the `gemm` crate, already
//! in the tree through burn, SIMD and multi-threaded), a pivoted Cholesky factorisation of a
//! positive semi-definite matrix, and the eigenvalues of a symmetric matrix (Householder
//! tridiagonalisation, then the implicit QL algorithm with Wilkinson shifts).
//!
//! Matrices are row-major `Vec<f64>` / `&[f64]` with an explicit size.
use rayon::prelude::*;

use crate::error::{invalid, Result};

/// `C = A · B` with `A` `m x k` and `B` `k x n` given by their strides (`rs` = row stride,
/// `cs` = column stride), `C` row-major `m x n`.
#[allow(clippy::too_many_arguments)]
pub fn matmul_strided(
    m: usize,
    k: usize,
    n: usize,
    a: &[f64],
    a_rs: usize,
    a_cs: usize,
    b: &[f64],
    b_rs: usize,
    b_cs: usize,
) -> Vec<f64> {
    let mut c = vec![0.0f64; m * n];
    if m == 0 || n == 0 {
        return c;
    }
    if k == 0 {
        return c;
    }
    // Bounds: the last element each operand reads must be inside its slice.
    assert!((m - 1) * a_rs + (k - 1) * a_cs < a.len(), "lhs too short");
    assert!((k - 1) * b_rs + (n - 1) * b_cs < b.len(), "rhs too short");
    // SAFETY: the pointers cover the index ranges checked above; `c` is m x n row-major.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(0),
        );
    }
    c
}

/// `A · B` for row-major `A` (`m x k`) and `B` (`k x n`).
pub fn matmul(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    matmul_strided(m, k, n, a, k, 1, b, n, 1)
}

/// A pivoted Cholesky factor `S ≈ L Lᵀ` of a symmetric PSD `n x n` matrix: `l` is `n x rank`
/// stored with row stride `n` (row `i` = original index `i`).
pub struct PivotedCholesky {
    /// The factor, `n x n` storage of which the first `rank` columns are used.
    pub l: Vec<f64>,
    /// Matrix size.
    pub n: usize,
    /// Numerical rank: steps taken before the largest remaining pivot fell below the tolerance.
    pub rank: usize,
}

/// Pivoted Cholesky of the symmetric PSD `n x n` matrix `s` (LAPACK `dpstrf`'s rule: stop when the
/// largest remaining diagonal is below `n · eps · max(diag)`). Errors on a non-finite entry or a
/// clearly negative diagonal.
pub fn pivoted_cholesky(s: &[f64], n: usize) -> Result<PivotedCholesky> {
    if s.len() != n * n {
        return Err(invalid!("matrix of {} values is not {n} x {n}", s.len()));
    }
    if let Some(i) = s.iter().position(|v| !v.is_finite()) {
        return Err(invalid!(
            "matrix entry ({}, {}) is not finite",
            i / n.max(1),
            i % n.max(1)
        ));
    }
    let mut d: Vec<f64> = (0..n).map(|i| s[i * n + i]).collect();
    let dmax = d.iter().cloned().fold(0.0f64, f64::max);
    if let Some(i) = d.iter().position(|&v| v < -1e-9 * dmax.max(1e-300)) {
        return Err(invalid!(
            "covariance has a negative variance {} at index {i}: not positive semi-definite",
            d[i]
        ));
    }
    let tol = n as f64 * f64::EPSILON * dmax;
    let mut l = vec![0.0f64; n * n];
    let mut done = vec![false; n];
    let mut rank = 0;
    for k in 0..n {
        let mut p = usize::MAX;
        let mut best = f64::NEG_INFINITY;
        for (i, &di) in d.iter().enumerate() {
            if !done[i] && di > best {
                best = di;
                p = i;
            }
        }
        if p == usize::MAX || best <= tol || best <= 0.0 {
            break;
        }
        done[p] = true;
        let lpp = best.sqrt();
        let row_p: Vec<f64> = l[p * n..p * n + k].to_vec();
        l[p * n + k] = lpp;
        // Column k for every remaining row, in parallel over rows.
        let updates: Vec<(usize, f64)> = (0..n)
            .into_par_iter()
            .filter(|&i| !done[i])
            .map(|i| {
                let row = &l[i * n..i * n + k];
                let dot: f64 = row.iter().zip(&row_p).map(|(a, b)| a * b).sum();
                (i, (s[i * n + p] - dot) / lpp)
            })
            .collect();
        for (i, v) in updates {
            l[i * n + k] = v;
            d[i] -= v * v;
        }
        rank = k + 1;
    }
    Ok(PivotedCholesky { l, n, rank })
}

/// Eigenvalues of the symmetric `n x n` matrix `a` (destroyed), in ascending order.
///
/// Householder reduction to tridiagonal form (the trailing updates run in parallel over rows),
/// then implicit QL with shifts on the tridiagonal matrix. Errors if a value is not finite or QL
/// does not converge.
pub fn symmetric_eigenvalues(mut a: Vec<f64>, n: usize) -> Result<Vec<f64>> {
    if a.len() != n * n {
        return Err(invalid!("matrix of {} values is not {n} x {n}", a.len()));
    }
    if a.iter().any(|v| !v.is_finite()) {
        return Err(invalid!("matrix has a non-finite entry"));
    }
    let (mut d, mut e) = tridiagonalize(&mut a, n);
    tql_eigenvalues(&mut d, &mut e)?;
    d.sort_by(|x, y| x.total_cmp(y));
    Ok(d)
}

/// Reduces symmetric `a` to tridiagonal form; returns (diagonal, off-diagonal with `e[i]`
/// between `i` and `i + 1`, `e[n-1] = 0`).
///
/// Householder step k: `v` maps column k below the diagonal onto `alpha e1`, the trailing block
/// becomes `B - v wᵀ - w vᵀ` with `p = beta B v`, `w = p - (beta/2)(pᵀv) v`. The rank-2 update of
/// step k is applied lazily, fused with the product `B v` of step k + 1, so each step reads the
/// trailing block once.
fn tridiagonalize(a: &mut [f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut d = vec![0.0; n];
    let mut e = vec![0.0; n];
    if n == 0 {
        return (d, e);
    }
    // The pending update: `a[i][j] -= pv[i-off] pw[j-off] + pw[i-off] pv[j-off]` for i, j >= off.
    let mut pv: Vec<f64> = Vec::new();
    let mut pw: Vec<f64> = Vec::new();
    let mut poff = 0usize;
    let apply_row =
        |row: &mut [f64], i: usize, from: usize, pv: &[f64], pw: &[f64], poff: usize| {
            if pv.is_empty() {
                return;
            }
            let (vi, wi) = (pv[i - poff], pw[i - poff]);
            let (vs, ws) = (&pv[from - poff..], &pw[from - poff..]);
            for ((r, vj), wj) in row[from..].iter_mut().zip(vs).zip(ws) {
                *r -= vi * wj + wi * vj;
            }
        };
    for k in 0..n.saturating_sub(2) {
        let off = k + 1;
        apply_row(&mut a[k * n..(k + 1) * n], k, k, &pv, &pw, poff);
        d[k] = a[k * n + k];
        let x = &a[k * n + off..k * n + n];
        let norm = x.iter().map(|t| t * t).sum::<f64>().sqrt();
        let alpha = if x[0] > 0.0 { -norm } else { norm };
        let mut v: Vec<f64> = x.to_vec();
        v[0] -= alpha;
        let vv: f64 = v.iter().map(|t| t * t).sum();
        e[k] = alpha;
        let beta = if norm == 0.0 || vv == 0.0 {
            0.0
        } else {
            2.0 / vv
        };
        // One pass over the trailing rows: finish the previous update, then p_i = beta (B v)_i.
        let (pv_r, pw_r, v_r) = (&pv, &pw, &v);
        let p: Vec<f64> = a[off * n..]
            .par_chunks_mut(n)
            .enumerate()
            .map(|(r, row)| {
                apply_row(row, off + r, off, pv_r, pw_r, poff);
                beta * row[off..].iter().zip(v_r).map(|(x, y)| x * y).sum::<f64>()
            })
            .collect();
        let c = 0.5 * beta * p.iter().zip(&v).map(|(x, y)| x * y).sum::<f64>();
        let w: Vec<f64> = p.iter().zip(&v).map(|(pi, vi)| pi - c * vi).collect();
        if beta == 0.0 {
            pv.clear();
            pw.clear();
        } else {
            pv = v;
            pw = w;
        }
        poff = off;
    }
    if n >= 2 {
        for i in n - 2..n {
            apply_row(&mut a[i * n..(i + 1) * n], i, n - 2, &pv, &pw, poff);
        }
        d[n - 2] = a[(n - 2) * n + n - 2];
        e[n - 2] = a[(n - 2) * n + n - 1];
    }
    d[n - 1] = a[(n - 1) * n + n - 1];
    e[n - 1] = 0.0;
    (d, e)
}

/// Implicit QL with Wilkinson-type shifts on a symmetric tridiagonal matrix (eigenvalues only):
/// `d` becomes the eigenvalues. An off-diagonal element is negligible below `eps · ‖T‖` (EISPACK
/// `tql1`'s rule): a relative-to-neighbours test stalls on clusters of eigenvalues much smaller
/// than the norm, where rounding noise of size `eps · ‖T‖` never dies out.
fn tql_eigenvalues(d: &mut [f64], e: &mut [f64]) -> Result<()> {
    let n = d.len();
    let tnorm = d
        .iter()
        .zip(e.iter())
        .map(|(a, b)| a.abs() + b.abs())
        .fold(0.0f64, f64::max);
    let tol = f64::EPSILON * tnorm;
    for l in 0..n {
        let mut iter = 0;
        loop {
            // Find a negligible off-diagonal element at or after l.
            let mut m = l;
            while m + 1 < n {
                if e[m].abs() <= tol {
                    break;
                }
                m += 1;
            }
            if m == l {
                break;
            }
            iter += 1;
            if iter > 200 {
                return Err(invalid!(
                    "the symmetric eigenvalue iteration did not converge"
                ));
            }
            let mut g = (d[l + 1] - d[l]) / (2.0 * e[l]);
            let mut r = g.hypot(1.0);
            g = d[m] - d[l] + e[l] / (g + r.copysign(g));
            let (mut s, mut c, mut p) = (1.0f64, 1.0f64, 0.0f64);
            let mut underflow = false;
            let mut i = m;
            while i > l {
                i -= 1;
                let f = s * e[i];
                let b = c * e[i];
                r = f.hypot(g);
                e[i + 1] = r;
                if r == 0.0 {
                    d[i + 1] -= p;
                    e[m] = 0.0;
                    underflow = true;
                    break;
                }
                s = f / r;
                c = g / r;
                g = d[i + 1] - p;
                r = (d[i] - g) * s + 2.0 * c * b;
                p = s * r;
                d[i + 1] = g + p;
                g = c * r - b;
            }
            if underflow {
                continue;
            }
            d[l] -= p;
            e[l] = g;
            e[m] = 0.0;
        }
    }
    Ok(())
}
