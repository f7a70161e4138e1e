//! Every malformed input gives an `Error` naming the file and what is wrong.

mod common;
use common::{gzip, idx_header, temp_dir};
use daed_io::cifar::read_cifar10;
use daed_io::datasets::{load, DatasetName, DatasetSpec};
use daed_io::folder::{load_image_file, read_folder, FolderOptions};
use daed_io::idx::{load_idx_pair, read_idx_images, read_idx_labels};
use daed_io::npz::{npy_from_bytes, read_npz};
use std::path::Path;

fn err_msg<T: std::fmt::Debug>(r: daed_io::Result<T>) -> String {
    r.expect_err("expected an error").to_string()
}

fn assert_names(msg: &str, path: &Path, words: &[&str]) {
    let name = path.file_name().unwrap().to_string_lossy();
    assert!(msg.contains(&*name), "message should name {name}: {msg}");
    for w in words {
        assert!(msg.contains(w), "message should say '{w}': {msg}");
    }
}

#[test]
fn truncated_idx() {
    let d = temp_dir("trunc-idx");
    let mut data = idx_header(0x803, &[10, 28, 28]);
    data.extend(vec![0u8; 10 * 784 - 100]);
    let raw = d.join("short-images-idx3-ubyte");
    std::fs::write(&raw, &data).unwrap();
    assert_names(
        &err_msg(read_idx_images(&raw)),
        &raw,
        &["truncated", "7840", "7740"],
    );
    let gz = d.join("short-images-idx3-ubyte.gz");
    std::fs::write(&gz, gzip(&data)).unwrap();
    assert_names(&err_msg(read_idx_images(&gz)), &gz, &["truncated"]);
    let tiny = d.join("tiny-labels");
    std::fs::write(&tiny, [0, 0, 8]).unwrap();
    assert_names(&err_msg(read_idx_labels(&tiny)), &tiny, &["too short"]);
}

#[test]
fn wrong_magic() {
    let d = temp_dir("magic");
    let labels = d.join("labels.idx");
    let mut data = idx_header(0x801, &[3]);
    data.extend([1, 2, 3]);
    std::fs::write(&labels, &data).unwrap();
    assert_eq!(read_idx_labels(&labels).unwrap(), vec![1, 2, 3]);
    // A labels file read as images.
    assert_names(
        &err_msg(read_idx_images(&labels)),
        &labels,
        &["magic", "0x00000801", "0x00000803"],
    );
}

#[test]
fn label_image_count_mismatch() {
    let d = temp_dir("count");
    let mut img = idx_header(0x803, &[3, 2, 2]);
    img.extend([0u8; 12]);
    let mut lab = idx_header(0x801, &[4]);
    lab.extend([0u8; 4]);
    let (ip, lp) = (d.join("a-images.gz"), d.join("a-labels.gz"));
    std::fs::write(&ip, gzip(&img)).unwrap();
    std::fs::write(&lp, gzip(&lab)).unwrap();
    assert_names(
        &err_msg(load_idx_pair(&ip, &lp)),
        &lp,
        &["label count 4", "image count 3"],
    );
}

#[test]
fn corrupt_gzip() {
    let d = temp_dir("gzip");
    let mut bytes = gzip(&idx_header(0x801, &[0]));
    let n = bytes.len();
    bytes[n / 2..].iter_mut().for_each(|b| *b ^= 0x5a);
    let p = d.join("t10k-labels-idx1-ubyte.gz");
    std::fs::write(&p, &bytes).unwrap();
    assert_names(&err_msg(read_idx_labels(&p)), &p, &["gzip"]);
    // Through the dataset loader too.
    let mut img = idx_header(0x803, &[0, 28, 28]);
    img.truncate(16);
    std::fs::write(d.join("t10k-images-idx3-ubyte.gz"), gzip(&img)).unwrap();
    let spec = DatasetSpec {
        split: "test".parse().unwrap(),
        path: Some(d.clone()),
        ..DatasetSpec::new(DatasetName::Mnist)
    };
    assert_names(&err_msg(load(&spec)), &p, &["gzip"]);
}

#[test]
fn truncated_cifar() {
    let d = temp_dir("cifar");
    let p = d.join("data_batch_1.bin");
    std::fs::write(&p, vec![1u8; 3073 * 2 + 100]).unwrap();
    assert_names(
        &err_msg(read_cifar10(&[&p])),
        &p,
        &["not a multiple", "3073"],
    );
    std::fs::write(&p, vec![11u8; 3073]).unwrap();
    assert_names(&err_msg(read_cifar10(&[&p])), &p, &["label 11"]);
    std::fs::write(&p, vec![3u8; 3073 * 2]).unwrap();
    let two = read_cifar10(&[&p, &p]).unwrap();
    assert_eq!((two.len(), two.labels.unwrap()), (4, vec![3; 4]));
}

#[test]
fn empty_folder_and_non_image() {
    let d = temp_dir("folder");
    let empty = d.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert_names(
        &err_msg(read_folder(&empty, &FolderOptions::default())),
        &empty,
        &["no PNG/JPEG"],
    );
    let f = d.join("mixed");
    std::fs::create_dir_all(&f).unwrap();
    image::RgbImage::new(4, 4).save(f.join("a.png")).unwrap();
    std::fs::write(f.join("b.txt"), "hello").unwrap();
    assert_names(
        &err_msg(read_folder(&f, &FolderOptions::default())),
        &f.join("b.txt"),
        &["not a PNG/JPEG"],
    );
    std::fs::remove_file(f.join("b.txt")).unwrap();
    std::fs::write(f.join("c.png"), "not really a png").unwrap();
    assert_names(
        &err_msg(read_folder(&f, &FolderOptions::default())),
        &f.join("c.png"),
        &["decode"],
    );
    std::fs::remove_file(f.join("c.png")).unwrap();
    image::GrayImage::new(5, 4).save(f.join("d.png")).unwrap();
    assert_names(
        &err_msg(read_folder(&f, &FolderOptions::default())),
        &f.join("d.png"),
        &["5x4", "4x4"],
    );
    let crop = FolderOptions {
        crop: Some(8),
        ..Default::default()
    };
    assert_names(
        &err_msg(read_folder(&f, &crop)),
        &f.join("a.png"),
        &["crop"],
    );
    let ok = read_folder(
        &f,
        &FolderOptions {
            size: Some((3, 3)),
            crop: None,
            channels: 1,
        },
    )
    .unwrap();
    assert_eq!((ok.len(), ok.channels, ok.height), (2, 1, 3));
}

/// A 48x40 picture with detail in every block, so that any prefix of its file misses image data.
fn test_picture() -> image::RgbImage {
    image::RgbImage::from_fn(48, 40, |x, y| {
        let n = (x * 7919 + y * 104_729) % 251;
        image::Rgb([(x * 5) as u8, (y * 6) as u8, n as u8])
    })
}

#[test]
fn truncated_jpeg_is_refused() {
    let d = temp_dir("trunc-jpeg");
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
        .encode_image(&test_picture())
        .unwrap();
    let whole = d.join("whole.jpg");
    std::fs::write(&whole, &jpeg).unwrap();
    let (px, h, w) = load_image_file(&whole, &FolderOptions::default()).unwrap();
    assert_eq!((px.len(), h, w), (3 * 48 * 40, 40, 48));
    // Padding after the end-of-image marker (zero bytes, a newline) is tolerated.
    let padded = d.join("padded.jpg");
    std::fs::write(&padded, [&jpeg[..], &[0, 0, b'\n']].concat()).unwrap();
    load_image_file(&padded, &FolderOptions::default()).unwrap();

    let cut = d.join("cut.jpg");
    std::fs::write(&cut, &jpeg[..jpeg.len() * 6 / 10]).unwrap();
    assert_names(
        &err_msg(load_image_file(&cut, &FolderOptions::default())),
        &cut,
        &["truncated JPEG", "end-of-image"],
    );
    // Nor does a folder holding it load, whatever the extension says.
    let f = d.join("folder");
    std::fs::create_dir_all(&f).unwrap();
    std::fs::write(f.join("a.jpg"), &jpeg).unwrap();
    std::fs::write(f.join("b.png"), &jpeg[..jpeg.len() * 6 / 10]).unwrap();
    assert_names(
        &err_msg(read_folder(&f, &FolderOptions::default())),
        &f.join("b.png"),
        &["truncated JPEG"],
    );
    std::fs::remove_file(f.join("b.png")).unwrap();
    assert_eq!(read_folder(&f, &FolderOptions::default()).unwrap().len(), 1);
}

#[test]
fn truncated_png_is_refused() {
    let d = temp_dir("trunc-png");
    let whole = d.join("whole.png");
    test_picture().save(&whole).unwrap();
    load_image_file(&whole, &FolderOptions::default()).unwrap();
    let png = std::fs::read(&whole).unwrap();
    for keep in [png.len() * 6 / 10, png.len() - 12, 20] {
        let cut = d.join(format!("cut-{keep}.png"));
        std::fs::write(&cut, &png[..keep]).unwrap();
        assert_names(
            &err_msg(load_image_file(&cut, &FolderOptions::default())),
            &cut,
            &["decode"],
        );
    }
}

#[test]
fn dataset_not_found_hint() {
    let d = temp_dir("notfound");
    let spec = DatasetSpec {
        path: Some(d.clone()),
        ..DatasetSpec::new(DatasetName::FashionMnist)
    };
    let msg = err_msg(load(&spec));
    assert!(
        msg.contains("fashion-mnist") && msg.contains(&*d.to_string_lossy()),
        "{msg}"
    );
    assert!(
        msg.contains("daed data fetch fashion-mnist --to DIR") && msg.contains("DAED_DATA"),
        "{msg}"
    );
    let folder = err_msg(load(&DatasetSpec::new(DatasetName::Folder)));
    assert!(folder.contains("--data PATH"), "{folder}");
    let bad = "imagenet".parse::<DatasetName>().unwrap_err().to_string();
    assert!(
        bad.contains("imagenet") && bad.contains("cifar100") && bad.contains("celeba"),
        "{bad}"
    );
}

#[test]
fn bad_npy_and_npz() {
    let d = temp_dir("npz");
    let p = d.join("x.npz");
    std::fs::write(&p, b"PK not a zip at all").unwrap();
    assert_names(&err_msg(read_npz(&p)), &p, &["not a zip"]);
    let npy = |descr: &str, fortran: &str, body: usize| {
        let hdr = format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': (2, 2), }}");
        let mut v = b"\x93NUMPY\x01\x00".to_vec();
        v.extend((hdr.len() as u16).to_le_bytes());
        v.extend(hdr.as_bytes());
        v.extend(vec![0u8; body]);
        v
    };
    assert!(npy_from_bytes(&npy("<f4", "False", 16), Path::new("ok.npy")).is_ok());
    assert!(
        err_msg(npy_from_bytes(&npy("<f4", "True", 16), Path::new("f.npy")))
            .contains("fortran_order")
    );
    assert!(
        err_msg(npy_from_bytes(&npy(">f4", "False", 16), Path::new("g.npy"))).contains("dtype")
    );
    let msg = err_msg(npy_from_bytes(&npy("<f8", "False", 31), Path::new("h.npy")));
    assert!(msg.contains("h.npy") && msg.contains("truncated"), "{msg}");
}
