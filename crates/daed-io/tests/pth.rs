//! PyTorch `.pth` reading: the fixtures of `tests/fixtures/make_pth_fixtures.py` (zip and legacy
//! formats), with every expected value recomputed here from the generator's formulas, and bad files.

use daed_io::pth::{pth_from_bytes, read_pth, PthTensor};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn read(name: &str) -> BTreeMap<String, PthTensor> {
    read_pth(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn err_msg(r: daed_io::Result<BTreeMap<String, PthTensor>>) -> String {
    r.expect_err("expected an error").to_string()
}

/// Row-major index tuples of `shape`.
fn indices(shape: &[usize]) -> Vec<Vec<usize>> {
    let n: usize = shape.iter().product();
    (0..n)
        .map(|mut flat| {
            let mut idx = vec![0; shape.len()];
            for d in (0..shape.len()).rev() {
                idx[d] = flat % shape[d];
                flat /= shape[d];
            }
            idx
        })
        .collect()
}

/// Checks tensor `name`: its shape, and each element equal to `f(index)` within `tol`.
fn check(
    m: &BTreeMap<String, PthTensor>,
    name: &str,
    shape: &[usize],
    tol: f32,
    f: impl Fn(&[usize]) -> f32,
) {
    let t = m
        .get(name)
        .unwrap_or_else(|| panic!("missing tensor {name}"));
    assert_eq!(t.shape, shape, "{name}: shape");
    let want: Vec<f32> = indices(shape).iter().map(|i| f(i)).collect();
    assert_eq!(t.data.len(), want.len(), "{name}: element count");
    for (k, (&got, &w)) in t.data.iter().zip(&want).enumerate() {
        let ok = if w.is_finite() {
            (got - w).abs() <= tol
        } else {
            got == w
        };
        assert!(ok, "{name}[{k}]: got {got}, want {w}");
    }
}

/// The tensors of `tensors()` in make_pth_fixtures.py.
fn check_tensors(m: &BTreeMap<String, PthTensor>) {
    let keys: Vec<&str> = m.keys().map(|k| k.as_str()).collect();
    let mut want = vec![
        "f32",
        "f64",
        "f16",
        "bf16",
        "i64",
        "i32",
        "u8",
        "bool",
        "num_batches_tracked",
        "base",
        "transposed",
        "sliced",
        "expanded",
        "shared_a",
        "shared_b",
        "empty",
    ];
    want.sort_unstable();
    assert_eq!(keys, want, "non-tensor entries (note, count) are skipped");
    let flat = |i: &[usize], shape: &[usize]| {
        i.iter().zip(shape).fold(0usize, |a, (&x, &d)| a * d + x) as f32
    };
    check(m, "f32", &[2, 3, 4], 0.0, |i| {
        flat(i, &[2, 3, 4]) * 0.5 - 3.0
    });
    check(m, "f64", &[2, 3], 0.0, |i| {
        ((i[0] * 3 + i[1]) as f64 / 3.0) as f32
    });
    let f16: Vec<f32> = (-8..8)
        .map(|i| i as f32 * 0.375)
        .chain([
            2f32.powi(-20),
            2f32.powi(-24),
            f32::INFINITY,
            f32::NEG_INFINITY,
            65504.0,
        ])
        .collect();
    check(m, "f16", &[f16.len()], 0.0, |i| f16[i[0]]);
    check(m, "bf16", &[6], 0.0, |i| i[0] as f32 * 1.5 - 4.0);
    check(m, "i64", &[5], 0.0, |i| i[0] as f32 - 2.0);
    check(m, "i32", &[4], 0.0, |i| i[0] as f32 * 1000.0 - 1500.0);
    check(m, "u8", &[6], 0.0, |i| i[0] as f32 + 250.0);
    check(m, "bool", &[3], 0.0, |i| [1.0, 0.0, 1.0][i[0]]);
    check(m, "num_batches_tracked", &[], 0.0, |_| 7.0);
    // base = arange(12).reshape(3, 4) and two views of its storage
    check(m, "base", &[3, 4], 0.0, |i| (i[0] * 4 + i[1]) as f32);
    check(m, "transposed", &[4, 3], 0.0, |i| (i[1] * 4 + i[0]) as f32);
    check(m, "sliced", &[2, 2], 0.0, |i| {
        ((1 + i[0]) * 4 + 1 + i[1]) as f32
    });
    check(m, "expanded", &[2, 3], 0.0, |i| i[1] as f32);
    // shared = arange(10) * 2; shared_b = shared[3:9].view(2, 3)
    check(m, "shared_a", &[10], 0.0, |i| i[0] as f32 * 2.0);
    check(m, "shared_b", &[2, 3], 0.0, |i| {
        (3 + i[0] * 3 + i[1]) as f32 * 2.0
    });
    check(m, "empty", &[0, 3], 0.0, |_| 0.0);
}

#[test]
fn tensors_zip_legacy_and_protocol_4() {
    let zip = read("tensors_zip.pth");
    check_tensors(&zip);
    let legacy = read("tensors_legacy.pth");
    check_tensors(&legacy);
    let p4 = read("tensors_zip_p4.pth");
    check_tensors(&p4);
    assert_eq!(zip, legacy);
    assert_eq!(zip, p4);
}

/// The state dict of `sequential_state_dict()` in make_pth_fixtures.py.
fn check_sequential(m: &BTreeMap<String, PthTensor>) {
    let keys: Vec<&str> = m.keys().map(|k| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "0.bias",
            "0.weight",
            "1.bias",
            "1.num_batches_tracked",
            "1.running_mean",
            "1.running_var",
            "1.weight"
        ]
    );
    // torch computes these in float32: allow its rounding.
    let tol = 1e-6;
    check(m, "0.weight", &[3, 2, 3, 3], tol, |i| {
        (((i[0] * 2 + i[1]) * 3 + i[2]) * 3 + i[3]) as f32 * 0.01 - 0.2
    });
    check(m, "0.bias", &[3], tol, |i| i[0] as f32 - 1.0);
    check(m, "1.weight", &[3], tol, |i| 1.0 + i[0] as f32 * 0.1);
    check(m, "1.bias", &[3], tol, |i| i[0] as f32 * -0.5);
    check(m, "1.running_mean", &[3], tol, |i| i[0] as f32 * 0.25);
    check(m, "1.running_var", &[3], tol, |i| i[0] as f32 + 1.0);
    check(m, "1.num_batches_tracked", &[], 0.0, |_| 5.0);
}

#[test]
fn sequential_state_dict_both_formats() {
    check_sequential(&read("seq_zip.pth"));
    check_sequential(&read("seq_legacy.pth"));
}

#[test]
fn state_dict_inside_a_checkpoint() {
    // {"epoch", "state_dict", "args": argparse.Namespace}: the Namespace is an unknown global,
    // but outside the state dict, so it does not matter.
    check_sequential(&read("wrapped_zip.pth"));
    // {"model": ..., "step": 10}
    check_sequential(&read("wrapped_model_legacy.pth"));
}

#[test]
fn in_memory_bytes() {
    let bytes = std::fs::read(fixture("seq_legacy.pth")).unwrap();
    check_sequential(&pth_from_bytes(&bytes, Path::new("mem.pth")).unwrap());
}

#[test]
fn unknown_global_names_the_file_and_the_global() {
    let p = fixture("unknown_global_zip.pth");
    let msg = err_msg(read_pth(&p));
    assert!(msg.contains("unknown_global_zip.pth"), "{msg}");
    assert!(msg.contains("fractions.Fraction"), "{msg}");
    assert!(msg.contains("'frac'"), "{msg}");
}

#[test]
fn compressed_zip_entries_are_refused_clearly() {
    let msg = err_msg(read_pth(fixture("compressed_zip.pth")));
    assert!(
        msg.contains("compressed_zip.pth") && msg.contains("compressed zip entry"),
        "{msg}"
    );
}

#[test]
fn not_a_pytorch_file() {
    for (bytes, words) in [
        (&b"hello, world"[..], "not a PyTorch file"),
        (&b""[..], "not a PyTorch file"),
        // A protocol-2 pickle of {} (what pickle.dumps({}, 2) writes): no torch magic number.
        (&b"\x80\x02}q\x00."[..], "bad magic number"),
        // Zip magic but no central directory.
        (
            &b"PK\x03\x04 and nothing else"[..],
            "end-of-central-directory",
        ),
    ] {
        let msg = err_msg(pth_from_bytes(bytes, Path::new("bogus.pth")));
        assert!(
            msg.contains("bogus.pth") && msg.contains(words),
            "{msg} (want '{words}')"
        );
    }
    // A zip archive without data.pkl (an .npz).
    let d = std::env::temp_dir().join(format!("daed-io-test-{}-pth", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let npz = d.join("arrays.npz");
    let a = daed_io::npz::NpyArray::f32(&[2], vec![1.0, 2.0]);
    daed_io::npz::write_npz(&npz, &[("a", &a)]).unwrap();
    let msg = err_msg(read_pth(&npz));
    assert!(
        msg.contains("arrays.npz") && msg.contains("data.pkl"),
        "{msg}"
    );
    let missing = d.join("missing.pth");
    assert!(err_msg(read_pth(&missing)).contains("missing.pth"));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn unknown_opcode() {
    // The legacy stream's first three pickles (magic number, protocol 1001, an empty sys_info),
    // then an object pickle with the opcode 0xff.
    let mut b = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.".to_vec();
    b.extend_from_slice(b"\x80\x02M\xe9\x03.");
    b.extend_from_slice(b"\x80\x02}.");
    let at = b.len() + 10;
    b.extend_from_slice(b"\x80\x02}(X\x01\x00\x00\x00a\xff");
    let msg = err_msg(pth_from_bytes(&b, Path::new("op.pth")));
    assert!(
        msg.contains("op.pth")
            && msg.contains("opcode 0xff")
            && msg.contains(&format!("byte {at}")),
        "{msg}"
    );
}

#[test]
fn truncated_files_are_errors_naming_the_file() {
    for name in ["tensors_legacy.pth", "tensors_zip.pth", "seq_legacy.pth"] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        for n in 0..bytes.len() {
            let r = pth_from_bytes(&bytes[..n], Path::new("cut.pth"));
            let msg = match r {
                Ok(_) => panic!("{name} cut to {n} of {} bytes was accepted", bytes.len()),
                Err(e) => e.to_string(),
            };
            assert!(msg.contains("cut.pth"), "{msg}");
        }
    }
    // Cut inside the last storage's data: the message says so.
    let bytes = std::fs::read(fixture("seq_legacy.pth")).unwrap();
    let msg = err_msg(pth_from_bytes(
        &bytes[..bytes.len() - 3],
        Path::new("cut.pth"),
    ));
    assert!(msg.contains("truncated"), "{msg}");
}

#[test]
fn corrupted_bytes_never_panic() {
    // Every single-byte corruption of the legacy stream (no checksums there) and of the zip's
    // pickle must give a result or an error, never a panic or an absurd allocation.
    for name in ["tensors_legacy.pth", "seq_legacy.pth", "tensors_zip_p4.pth"] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        for i in 0..bytes.len() {
            for x in [0xffu8, 0x01, 0x80] {
                let mut b = bytes.clone();
                b[i] ^= x;
                if let Err(e) = pth_from_bytes(&b, Path::new("bad.pth")) {
                    assert!(e.to_string().contains("bad.pth"), "{e}");
                }
            }
        }
    }
}

/// Opt-in check on a real-size file: `DAED_PTH=file.pth DAED_PTH_NPZ=file.npz`, where the `.npz`
/// holds the same tensors as float32, written by torch (see bench/make_pt_inception.py):
///
/// ```sh
/// python -c "import torch, numpy as np; sd = torch.load('file.pth', weights_only=True); \
///            np.savez('file.npz', **{k: v.float().numpy() for k, v in sd.items()})"
/// ```
#[test]
fn env_pth_matches_torch_npz() {
    let (Some(pth), Some(npz)) = (
        std::env::var_os("DAED_PTH"),
        std::env::var_os("DAED_PTH_NPZ"),
    ) else {
        eprintln!("SKIP: set DAED_PTH and DAED_PTH_NPZ to compare a .pth with torch's tensors");
        return;
    };
    let t0 = std::time::Instant::now();
    let got = read_pth(&pth).unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let want = daed_io::npz::read_npz(&npz).unwrap();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    let mut values = 0;
    for (k, w) in &want {
        let g = &got[k];
        assert_eq!(g.shape, w.shape, "{k}: shape");
        let w = w.to_f32_vec();
        assert!(
            g.data
                .iter()
                .zip(&w)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{k}: values differ"
        );
        values += w.len();
    }
    eprintln!(
        "{}: {} tensors, {values} values, identical to torch's (read in {secs:.2} s)",
        Path::new(&pth).display(),
        got.len()
    );
}
