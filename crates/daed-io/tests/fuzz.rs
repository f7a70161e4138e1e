//! Bounded fuzzing of every daed-io parser that reads user files, from the seed corpus in
//! `tests/fuzz_corpus/<parser>/` (and the `.pth` fixtures): no input may panic, and every error
//! must name the file.
//!
//! Each test runs `DAED_FUZZ_SECS` seconds (default 1) with seed `DAED_FUZZ_SEED` (default
//! 0xdaed); `--nocapture` shows the inputs run. Regenerate the corpus with
//! `cargo test -p daed-io --test fuzz -- --ignored write_fuzz_corpus`.

mod common;
use common::{gzip, idx_header, temp_dir};
use daed_io::cifar::{read_cifar_from_bytes, CifarKind};
use daed_io::folder::{load_image_file, FolderOptions};

use daed_io::idx::{
    load_idx_pair_from_bytes, maybe_gunzip, read_idx_images_from_bytes, read_idx_labels_from_bytes,
};
use daed_io::npz::{npy_from_bytes, npy_to_bytes, npz_from_bytes, npz_to_bytes, NpyArray, NpyData};
use daed_io::pth::pth_from_bytes;
use std::panic::RefUnwindSafe;
use std::path::{Path, PathBuf};

/// The name every in-memory parse is given; errors must mention it.
const ORIGIN: &str = "fuzz-input.bin";

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The files of `dir` (sorted), as the seeds of a corpus.
fn read_seeds(dir: &Path) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.extension().is_none_or(|e| e != "py"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

fn corpus(parser: &str) -> Vec<Vec<u8>> {
    read_seeds(&crate_dir().join("tests/fuzz_corpus").join(parser))
}

/// Panics (a finding) when `r` is an error that does not name `name`.
fn named<T>(r: daed_io::Result<T>, name: &str) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains(name), "error does not name {name}: {msg}");
            None
        }
    }
}

/// Fuzzes `parse` on `seeds` (see [`daed_io::fuzz::check`]).
fn run(parser: &str, seeds: &[Vec<u8>], parse: impl Fn(&[u8]) + RefUnwindSafe) {
    daed_io::fuzz::check(parser, seeds, parse);
}

// ---- the parsers, as the fuzz tests and the seed check call them ----

fn origin() -> &'static Path {
    Path::new(ORIGIN)
}

fn parse_idx_images(b: &[u8]) -> bool {
    named(read_idx_images_from_bytes(b, origin()), ORIGIN).is_some()
}

fn parse_idx_labels(b: &[u8]) -> bool {
    named(read_idx_labels_from_bytes(b, origin()), ORIGIN).is_some()
}

fn parse_gunzip(b: &[u8]) -> bool {
    named(maybe_gunzip(b, origin()), ORIGIN).is_some()
}

/// A pair seed is a little-endian u32 length `n`, then `n` bytes of images, then the labels.
fn parse_idx_pair(b: &[u8]) -> bool {
    let n = b
        .get(..4)
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize);
    let rest = b.get(4..).unwrap_or(&[]);
    let (images, labels) = rest.split_at(n.min(rest.len()));
    named(load_idx_pair_from_bytes(images, labels, origin()), ORIGIN).is_some()
}

fn parse_cifar(b: &[u8]) -> bool {
    let kinds = [
        CifarKind::Cifar10,
        CifarKind::Cifar100Fine,
        CifarKind::Cifar100Coarse,
    ];
    let ok = kinds.map(|k| named(read_cifar_from_bytes(b, k, origin()), ORIGIN).is_some());
    ok.iter().any(|&x| x)
}

fn parse_npy(b: &[u8]) -> bool {
    named(npy_from_bytes(b, origin()), ORIGIN).is_some()
}

fn parse_npz(b: &[u8]) -> bool {
    named(npz_from_bytes(b, origin()), ORIGIN).is_some()
}

fn parse_pth(b: &[u8]) -> bool {
    named(pth_from_bytes(b, origin()), ORIGIN).is_some()
}

/// A file the image tests rewrite in place for every input, plus an empty file for empty inputs.
/// On ext4, closing a file that was truncated to length 0 flushes it (milliseconds), so the
/// file is never truncated to 0: rewritten from the start, then cut to the input's length.
struct InputFile {
    path: PathBuf,
    empty: PathBuf,
    file: std::fs::File,
}

impl InputFile {
    fn new(path: PathBuf) -> InputFile {
        let file = std::fs::File::create(&path).unwrap();
        let ext = path.extension().unwrap().to_str().unwrap();
        let empty = path.with_extension(format!("empty.{ext}"));
        std::fs::write(&empty, b"").unwrap();
        InputFile { path, empty, file }
    }

    /// Stores `b` and returns the file that holds it.
    fn set(&self, b: &[u8]) -> &Path {
        use std::io::{Seek, Write};
        if b.is_empty() {
            return &self.empty;
        }
        let mut f = &self.file;
        f.rewind().unwrap();
        f.write_all(b).unwrap();
        f.set_len(b.len() as u64).unwrap();
        &self.path
    }
}

/// Writes `b` to a file of `input` and loads it as an image twice: as it is (RGB), and cropped
/// and resized to gray 2x2.
fn parse_image_file(input: &InputFile, b: &[u8]) -> bool {
    let file = input.set(b);
    let name = file.file_name().unwrap().to_str().unwrap();
    let plain = named(load_image_file(file, &FolderOptions::default()), name);
    let small = FolderOptions {
        crop: Some(2),
        size: Some((2, 2)),
        channels: 1,
    };
    let cropped = named(load_image_file(file, &small), name);
    plain.is_some() && cropped.is_some()
}

/// Rewrites the CRC-32 of every stored entry a zip's central directory lists, so that mutants of
/// a zip `.pth` reach the pickle machine and the tensor code instead of stopping at a CRC mismatch.
fn fix_zip_crcs(b: &[u8]) -> Vec<u8> {
    let le = |at: usize, n: usize| {
        let s = b.get(at..at.checked_add(n)?)?;
        Some(s.iter().rev().fold(0usize, |a, &x| (a << 8) | x as usize))
    };
    let mut out = b.to_vec();
    for p in (0..b.len().saturating_sub(3)).filter(|&p| b[p..p + 4] == *b"PK\x01\x02") {
        let entry = || {
            le(p + 10, 2).filter(|&method| method == 0)?;
            let (csize, off) = (le(p + 20, 4)?, le(p + 42, 4)?);
            let start = off.checked_add(30 + le(off + 26, 2)? + le(off + 28, 2)?)?;
            b.get(start..start.checked_add(csize)?)
        };
        if let (Some(data), Some(slot)) = (entry(), out.get_mut(p + 16..p + 20)) {
            slot.copy_from_slice(&crc32fast::hash(data).to_le_bytes());
        }
    }
    out
}

fn pth_seeds() -> Vec<Vec<u8>> {
    read_seeds(&crate_dir().join("tests/fixtures"))
}

// ---- one bounded run per parser ----

#[test]
fn fuzz_idx_images() {
    run("idx_images", &corpus("idx_images"), |b| {
        parse_idx_images(b);
    });
}

#[test]
fn fuzz_idx_labels() {
    run("idx_labels", &corpus("idx_labels"), |b| {
        parse_idx_labels(b);
    });
}

#[test]
fn fuzz_gunzip() {
    run("gzip", &corpus("gzip"), |b| {
        parse_gunzip(b);
    });
}

#[test]
fn fuzz_idx_pair() {
    run("idx_pair", &corpus("idx_pair"), |b| {
        parse_idx_pair(b);
    });
}

#[test]
fn fuzz_cifar() {
    run("cifar", &corpus("cifar"), |b| {
        parse_cifar(b);
    });
}

#[test]
fn fuzz_png() {
    let file = InputFile::new(temp_dir("fuzz-png").join("fuzz-input.png"));
    run("png", &corpus("png"), |b| {
        parse_image_file(&file, b);
    });
}

#[test]
fn fuzz_jpeg() {
    let file = InputFile::new(temp_dir("fuzz-jpeg").join("fuzz-input.jpg"));
    run("jpeg", &corpus("jpeg"), |b| {
        parse_image_file(&file, b);
    });
}

#[test]
fn fuzz_npy() {
    run("npy", &corpus("npy"), |b| {
        parse_npy(b);
    });
}

#[test]
fn fuzz_npz() {
    run("npz", &corpus("npz"), |b| {
        parse_npz(b);
    });
}

#[test]
fn fuzz_pth() {
    run("pth", &pth_seeds(), |b| {
        parse_pth(b);
    });
}

/// The zip `.pth` files again, with CRCs made right after mutation (the pickle, deeper).
#[test]
fn fuzz_pth_zip_crc_fixed() {
    let zips: Vec<Vec<u8>> = pth_seeds()
        .into_iter()
        .filter(|s| s.starts_with(b"PK"))
        .collect();
    run("pth_zip_crc_fixed", &zips, |b| {
        parse_pth(&fix_zip_crcs(b));
    });
}

/// Every seed is a valid input of its parser (a corpus of rejected files would fuzz little).
#[test]
fn seeds_are_valid() {
    type Parse = fn(&[u8]) -> bool;
    let byte_parsers: [(&str, Parse); 7] = [
        ("idx_images", parse_idx_images),
        ("idx_labels", parse_idx_labels),
        ("gzip", parse_gunzip),
        ("idx_pair", parse_idx_pair),
        ("cifar", parse_cifar),
        ("npy", parse_npy),
        ("npz", parse_npz),
    ];
    for (name, parse) in byte_parsers {
        for (i, s) in corpus(name).iter().enumerate() {
            assert!(parse(s), "{name} seed {i} does not parse");
        }
    }
    // compressed_zip.pth and unknown_global_zip.pth are refused on purpose (see tests/pth.rs).
    for s in pth_seeds() {
        assert_eq!(fix_zip_crcs(&s), s, "fix_zip_crcs changes a valid file");
    }
    let pth_ok = pth_seeds().iter().filter(|s| parse_pth(s)).count();
    assert!(pth_ok >= 7, "only {pth_ok} .pth fixtures parse");
    let d = temp_dir("fuzz-seeds");
    for (name, ext) in [("png", "png"), ("jpeg", "jpg")] {
        let file = InputFile::new(d.join(format!("seed.{ext}")));
        for (i, s) in corpus(name).iter().enumerate() {
            assert!(parse_image_file(&file, s), "{name} seed {i} does not load");
        }
    }
}

// ---- the seed corpus ----

fn idx_images_bytes() -> Vec<u8> {
    let mut v = idx_header(0x803, &[2, 3, 4]);
    v.extend((0..24u8).map(|i| i * 10));
    v
}

fn idx_labels_bytes() -> Vec<u8> {
    let mut v = idx_header(0x801, &[2]);
    v.extend([3, 7]);
    v
}

fn pair(images: &[u8], labels: &[u8]) -> Vec<u8> {
    let mut v = (images.len() as u32).to_le_bytes().to_vec();
    v.extend_from_slice(images);
    v.extend_from_slice(labels);
    v
}

/// `records` CIFAR records with `label_bytes` label bytes each and a simple pixel pattern.
fn cifar_bytes(labels: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::new();
    for (r, l) in labels.iter().enumerate() {
        v.extend_from_slice(l);
        v.extend((0..3072usize).map(|i| ((i * 7 + r * 31) % 251) as u8));
    }
    v
}

/// A small test picture: RGB gradients.
fn rgb_pixels(w: u32, h: u32) -> Vec<u8> {
    (0..h)
        .flat_map(|y| {
            (0..w).flat_map(move |x| [(x * 60) as u8, (y * 60) as u8, ((x + y) * 30) as u8])
        })
        .collect()
}

fn encode_png(w: u32, h: u32, data: &[u8], color: image::ExtendedColorType) -> Vec<u8> {
    use image::ImageEncoder;
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(data, w, h, color)
        .unwrap();
    out
}

fn encode_jpeg(w: u32, h: u32, data: &[u8], color: image::ExtendedColorType) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode(data, w, h, color)
        .unwrap();
    out
}

/// The corpus files, by parser directory and file name.
fn corpus_files() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    use image::ExtendedColorType::{Rgb8, Rgba8, L8};
    let (images, labels) = (idx_images_bytes(), idx_labels_bytes());
    let mut two_members = gzip(&labels[..5]);
    two_members.extend(gzip(&labels[5..]));
    let rgb = rgb_pixels(4, 4);
    let gray: Vec<u8> = (0..16u8).map(|i| i * 16).collect();
    let rgba: Vec<u8> = rgb
        .chunks(3)
        .flat_map(|p| [p[0], p[1], p[2], 200])
        .collect();
    let f32a = NpyArray::f32(&[2, 3], vec![0.5, -1.0, 2.25, 3.0, 1e-3, -7.5]);
    let u8a = NpyArray::new(vec![4], NpyData::U8(vec![1, 2, 250, 255])).unwrap();
    let i64a = NpyArray::new(vec![], NpyData::I64(vec![-42])).unwrap();
    let f64a = NpyArray::f64(&[3, 1], vec![1.5, -2.0, 1e300]);
    // An `<i4` array: a u1 array of 8 bytes relabelled as two 4-byte integers.
    let u8x8 = NpyArray::new(
        vec![8],
        NpyData::U8(vec![1, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff]),
    )
    .unwrap();
    let mut i4 = npy_to_bytes(&u8x8);
    for (from, to) in [(b"|u1", b"<i4"), (b"(8,", b"(2,")] {
        let at = i4.windows(3).position(|w| w == from).unwrap();
        i4[at..at + 3].copy_from_slice(to);
    }
    vec![
        ("idx_images", "two_images.idx", images.clone()),
        ("idx_images", "two_images.idx.gz", gzip(&images)),
        ("idx_labels", "two_labels.idx", labels.clone()),
        ("idx_labels", "two_labels.idx.gz", gzip(&labels)),
        ("gzip", "labels.idx.gz", gzip(&labels)),
        ("gzip", "two_members.gz", two_members),
        ("idx_pair", "pair.bin", pair(&images, &labels)),
        (
            "idx_pair",
            "pair_gz.bin",
            pair(&gzip(&images), &gzip(&labels)),
        ),
        ("cifar", "cifar10_two.bin", cifar_bytes(&[&[3], &[9]])),
        (
            "cifar",
            "cifar100_two.bin",
            cifar_bytes(&[&[4, 41], &[19, 99]]),
        ),
        ("png", "rgb_4x4.png", encode_png(4, 4, &rgb, Rgb8)),
        ("png", "gray_4x4.png", encode_png(4, 4, &gray, L8)),
        ("png", "rgba_4x4.png", encode_png(4, 4, &rgba, Rgba8)),
        ("jpeg", "rgb_4x4.jpg", encode_jpeg(4, 4, &rgb, Rgb8)),
        ("jpeg", "gray_4x4.jpg", encode_jpeg(4, 4, &gray, L8)),
        ("npy", "f32_2x3.npy", npy_to_bytes(&f32a)),
        ("npy", "u8_4.npy", npy_to_bytes(&u8a)),
        ("npy", "i64_scalar.npy", npy_to_bytes(&i64a)),
        ("npy", "f64_3x1.npy", npy_to_bytes(&f64a)),
        ("npy", "i4_2.npy", i4),
        (
            "npz",
            "two_arrays.npz",
            npz_to_bytes(&[("w", &f32a), ("b", &u8a)]).unwrap(),
        ),
        (
            "npz",
            "python_zip64_deflate.npz",
            std::fs::read(crate_dir().join("tests/data/python_zip64_deflate.npz")).unwrap(),
        ),
    ]
}

/// Rewrites `tests/fuzz_corpus/` (run by hand after changing the corpus above).
#[test]
#[ignore]
fn write_fuzz_corpus() {
    let root = crate_dir().join("tests/fuzz_corpus");
    for (dir, name, bytes) in corpus_files() {
        let d = root.join(dir);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(name), bytes).unwrap();
    }
}

// ---- regressions: the exact inputs that made a parser panic ----

fn regression(name: &str) -> Vec<u8> {
    std::fs::read(crate_dir().join("tests/fuzz_corpus/regressions").join(name)).unwrap()
}

/// Found by `fuzz_npy`: a non-ASCII character where the quote of the `descr` value should be
/// panicked on slicing inside the character (npz.rs: `&r[1..]`).
#[test]
fn regression_npy_descr_non_ascii_quote() {
    let b = regression("npy-descr-non-ascii-quote.npy");
    let msg = npy_from_bytes(&b, origin()).unwrap_err().to_string();
    assert!(msg.contains(ORIGIN) && msg.contains("descr"), "{msg}");
    // The same with a version 2 header cut short.
    let msg = npy_from_bytes(b"\x93NUMPY\x02\x00\x10\x00", origin())
        .unwrap_err()
        .to_string();
    assert!(msg.contains(ORIGIN) && msg.contains("truncated"), "{msg}");
}
