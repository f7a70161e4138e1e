//! Downsampled ImageNet in its published npz form (`train_data_batch_N.npz`, `val_data.npz`): synthetic
//! files with known pixels and labels, batch order, limits, single files, directory layouts and every
//! malformed-file error.

mod common;
use common::temp_dir;
use daed_io::cifar::read_cifar10;
use daed_io::datasets::{load, DatasetName, DatasetSpec, Split};
use daed_io::imagenet::read_imagenet_npz;
use daed_io::npz::{read_npz_keys, write_npz, NpyArray, NpyData};
use daed_io::ImageSet;
use std::path::{Path, PathBuf};

/// Pixel (channel `c`, row `y`, column `x`) of synthetic image `id`; planes differ by 50 per channel.
fn px(id: usize, c: usize, y: usize, x: usize) -> u8 {
    ((id * 7 + c * 50 + y * 3 + x) % 256) as u8
}

/// Published row layout: the R plane, then G, then B, each `s` x `s` row-major.
fn row(id: usize, s: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(3 * s * s);
    for c in 0..3 {
        for y in 0..s {
            for x in 0..s {
                v.push(px(id, c, y, x));
            }
        }
    }
    v
}

fn rows(ids: &[usize], s: usize) -> Vec<u8> {
    ids.iter().flat_map(|&i| row(i, s)).collect()
}

fn u8s(shape: &[usize], v: Vec<u8>) -> NpyArray {
    NpyArray::new(shape.to_vec(), NpyData::U8(v)).unwrap()
}

fn i64s(v: &[i64]) -> NpyArray {
    NpyArray::new(vec![v.len()], NpyData::I64(v.to_vec())).unwrap()
}

/// Writes a published-format npz (with the crate's writer): `data` (N, 3*S*S), `labels`, `mean`.
fn write_batch(path: &Path, ids: &[usize], labels: &[i64], s: usize) {
    let data = u8s(&[ids.len(), 3 * s * s], rows(ids, s));
    let mean = NpyArray::f64(&[3 * s * s], vec![0.5; 3 * s * s]);
    write_npz(
        path,
        &[("data", &data), ("labels", &i64s(labels)), ("mean", &mean)],
    )
    .unwrap();
}

/// Raw `.npy` bytes with any dtype string.
fn npy(descr: &str, shape: &[usize], body: Vec<u8>) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let hdr = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}\n");
    let mut v = b"\x93NUMPY\x01\x00".to_vec();
    v.extend((hdr.len() as u16).to_le_bytes());
    v.extend(hdr.as_bytes());
    v.extend(body);
    v
}

/// A zip of DEFLATE entries `key.npy` (what `np.savez_compressed` writes), built by hand.
fn deflate_npz(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    use std::io::Write;
    let p32 = |v: &mut Vec<u8>, x: u32| v.extend(x.to_le_bytes());
    let p16 = |v: &mut Vec<u8>, x: u16| v.extend(x.to_le_bytes());
    let (mut z, mut cd) = (Vec::new(), Vec::new());
    for (key, data) in entries {
        let name = format!("{key}.npy");
        let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        let comp = enc.finish().unwrap();
        let crc = crc32fast::hash(data);
        let offset = z.len() as u32;
        p32(&mut z, 0x04034b50);
        for x in [20, 0, 8, 0, 0x21] {
            p16(&mut z, x)
        }
        for x in [crc, comp.len() as u32, data.len() as u32] {
            p32(&mut z, x)
        }
        p16(&mut z, name.len() as u16);
        p16(&mut z, 0);
        z.extend(name.as_bytes());
        z.extend(&comp);
        p32(&mut cd, 0x02014b50);
        for x in [20, 20, 0, 8, 0, 0x21] {
            p16(&mut cd, x)
        }
        for x in [crc, comp.len() as u32, data.len() as u32] {
            p32(&mut cd, x)
        }
        for x in [name.len() as u16, 0, 0, 0, 0] {
            p16(&mut cd, x)
        }
        p32(&mut cd, 0);
        p32(&mut cd, offset);
        cd.extend(name.as_bytes());
    }
    let cd_offset = z.len() as u32;
    z.extend(&cd);
    p32(&mut z, 0x06054b50);
    for x in [0, 0, entries.len() as u16, entries.len() as u16] {
        p16(&mut z, x)
    }
    p32(&mut z, cd.len() as u32);
    p32(&mut z, cd_offset);
    p16(&mut z, 0);
    z
}

/// A 32px directory: batches 1, 2 and 10 (3 + 2 + 2 images, ids 0..7) and a val file (ids 100, 101)
/// stored DEFLATE with `data` as (N, 3, S, S), `<i4` labels and a `mean` of a dtype we cannot read.
fn make_dir32(name: &str) -> PathBuf {
    let d = temp_dir(name);
    write_batch(
        &d.join("train_data_batch_1.npz"),
        &[0, 1, 2],
        &[1, 1000, 5],
        32,
    );
    write_batch(&d.join("train_data_batch_2.npz"), &[3, 4], &[2, 3], 32);
    write_batch(&d.join("train_data_batch_10.npz"), &[5, 6], &[10, 11], 32);
    // Not batches: the pickled release's file and a stray name.
    std::fs::write(d.join("train_data_batch_3"), b"pickle").unwrap();
    std::fs::write(d.join("train_data_batch_x.npz"), b"junk").unwrap();
    let labels: Vec<u8> = [7i32, 8].iter().flat_map(|v| v.to_le_bytes()).collect();
    let val = deflate_npz(&[
        ("data", npy("|u1", &[2, 3, 32, 32], rows(&[100, 101], 32))),
        ("labels", npy("<i4", &[2], labels)),
        ("mean", npy(">f8", &[1], vec![0; 8])),
    ]);
    std::fs::write(d.join("val_data.npz"), val).unwrap();
    d
}

fn spec(name: DatasetName, split: Split, path: &Path, limit: Option<usize>) -> DatasetSpec {
    DatasetSpec {
        split,
        path: Some(path.to_path_buf()),
        limit,
        ..DatasetSpec::new(name)
    }
}

fn assert_images(set: &ImageSet, ids: &[usize], labels: &[u16], s: usize) {
    assert_eq!((set.channels, set.height, set.width), (3, s, s));
    assert_eq!(set.len(), ids.len());
    assert_eq!(set.labels.as_deref(), Some(labels));
    assert!(
        set.pixels == rows(ids, s),
        "pixels differ from images {ids:?}"
    );
}

fn err_msg<T: std::fmt::Debug>(r: daed_io::Result<T>) -> String {
    r.expect_err("expected an error").to_string()
}

fn assert_says(msg: &str, path: &Path, words: &[&str]) {
    let name = path.file_name().unwrap().to_string_lossy();
    assert!(msg.contains(&*name), "message should name {name}: {msg}");
    for w in words {
        assert!(msg.contains(w), "message should say '{w}': {msg}");
    }
}

#[test]
fn imagenet_names_shapes_classes() {
    for (s, n) in [
        ("imagenet32", DatasetName::Imagenet32),
        ("imagenet-32", DatasetName::Imagenet32),
        ("ImageNet_32", DatasetName::Imagenet32),
        ("imagenet64", DatasetName::Imagenet64),
        ("imagenet-64", DatasetName::Imagenet64),
        ("imagenet_64", DatasetName::Imagenet64),
    ] {
        assert_eq!(s.parse::<DatasetName>().unwrap(), n, "{s}");
    }
    assert_eq!(DatasetName::Imagenet32.to_string(), "imagenet32");
    assert_eq!(DatasetName::Imagenet64.as_str(), "imagenet64");
    assert_eq!(DatasetName::Imagenet32.shape(), Some((3, 32, 32)));
    assert_eq!(DatasetName::Imagenet64.shape(), Some((3, 64, 64)));
    assert_eq!(DatasetName::Imagenet32.num_classes(), Some(1000));
    assert_eq!(DatasetName::Imagenet64.num_classes(), Some(1000));
    for n in DatasetName::ALL {
        assert_eq!(n.as_str().parse::<DatasetName>().unwrap(), n);
    }
    assert!(DatasetName::ALL.contains(&DatasetName::Imagenet64));
    let bad = "imagenet128"
        .parse::<DatasetName>()
        .unwrap_err()
        .to_string();
    assert!(
        bad.contains("imagenet128") && bad.contains("imagenet32") && bad.contains("imagenet64"),
        "{bad}"
    );
}

#[test]
fn imagenet_train_pixels_labels_and_numeric_batch_order() {
    let d = make_dir32("in-train");
    let set = load(&spec(DatasetName::Imagenet32, Split::Train, &d, None)).unwrap();
    // batch_1, batch_2, batch_10 (string order would put batch_10 second); labels 0-based.
    assert_images(&set, &[0, 1, 2, 3, 4, 5, 6], &[0, 999, 4, 1, 2, 9, 10], 32);
    // Channel order: CHW planes R, G, B, exactly as in the file row.
    let img = set.image(1);
    assert_eq!(img[0], px(1, 0, 0, 0));
    assert_eq!(img[32 * 32 + 2 * 32 + 5], px(1, 1, 2, 5));
    assert_eq!(img[2 * 32 * 32 + 31 * 32 + 31], px(1, 2, 31, 31));
    assert_ne!(img[0], img[32 * 32], "R and G planes must differ");
    // The same rows as CIFAR-10 binary records load to the same pixels.
    let cifar = d.join("as_cifar.bin");
    let recs: Vec<u8> = (0..3)
        .flat_map(|i| [vec![0u8], row(i, 32)].concat())
        .collect();
    std::fs::write(&cifar, recs).unwrap();
    assert_eq!(read_cifar10(&[&cifar]).unwrap().pixels, set.take(3).pixels);
}

#[test]
fn imagenet_val_is_the_test_split() {
    let d = make_dir32("in-val");
    // DEFLATE entries, (N, 3, S, S) data, `<i4` labels; the unreadable `mean` is skipped.
    let set = load(&spec(DatasetName::Imagenet32, Split::Test, &d, None)).unwrap();
    assert_images(&set, &[100, 101], &[6, 7], 32);
    let one = load(&spec(DatasetName::Imagenet32, Split::Test, &d, Some(1))).unwrap();
    assert_images(&one, &[100], &[6], 32);
}

#[test]
fn imagenet_limit_stops_reading_batches() {
    let d = make_dir32("in-limit");
    let set = load(&spec(DatasetName::Imagenet32, Split::Train, &d, Some(4))).unwrap();
    assert_images(&set, &[0, 1, 2, 3], &[0, 999, 4, 1], 32);
    let set = load(&spec(DatasetName::Imagenet32, Split::Train, &d, Some(3))).unwrap();
    assert_images(&set, &[0, 1, 2], &[0, 999, 4], 32);
    let set = load(&spec(DatasetName::Imagenet32, Split::Train, &d, Some(100))).unwrap();
    assert_eq!(set.len(), 7);
    // A broken last batch is never opened when the limit is reached before it...
    let bad = d.join("train_data_batch_10.npz");
    std::fs::write(&bad, b"PK broken").unwrap();
    let set = load(&spec(DatasetName::Imagenet32, Split::Train, &d, Some(5))).unwrap();
    assert_images(&set, &[0, 1, 2, 3, 4], &[0, 999, 4, 1, 2], 32);
    // ...but is reported, by name, when it is needed.
    let msg = err_msg(load(&spec(
        DatasetName::Imagenet32,
        Split::Train,
        &d,
        Some(6),
    )));
    assert_says(&msg, &bad, &[]);
}

#[test]
fn imagenet_single_file_path() {
    let d = make_dir32("in-file");
    let b2 = d.join("train_data_batch_2.npz");
    let set = load(&spec(DatasetName::Imagenet32, Split::Train, &b2, None)).unwrap();
    assert_images(&set, &[3, 4], &[1, 2], 32);
    let set = load(&spec(DatasetName::Imagenet32, Split::Train, &b2, Some(1))).unwrap();
    assert_images(&set, &[3], &[1], 32);
    let val = d.join("val_data.npz");
    let set = load(&spec(DatasetName::Imagenet32, Split::Test, &val, None)).unwrap();
    assert_images(&set, &[100, 101], &[6, 7], 32);
    // The library reader takes files in the order given.
    let set = read_imagenet_npz(&[&val, &b2], 32, None).unwrap();
    assert_images(&set, &[100, 101, 3, 4], &[6, 7, 1, 2], 32);
}

#[test]
fn imagenet64_and_size_mismatch() {
    let d = temp_dir("in-64");
    write_batch(&d.join("train_data_batch_1.npz"), &[9, 8], &[1000, 1], 64);
    let set = load(&spec(DatasetName::Imagenet64, Split::Train, &d, None)).unwrap();
    assert_images(&set, &[9, 8], &[999, 0], 64);
    assert_eq!(set.image(0)[64 * 64 + 64 + 63], px(9, 1, 1, 63));
    // A 64px file loaded as imagenet32, and the other way round: the error says which it is.
    let f64px = d.join("train_data_batch_1.npz");
    let msg = err_msg(load(&spec(DatasetName::Imagenet32, Split::Train, &d, None)));
    assert_says(&msg, &f64px, &["12288", "64x64", "imagenet64", "3072"]);
    let d32 = make_dir32("in-64-from-32");
    let msg = err_msg(load(&spec(
        DatasetName::Imagenet64,
        Split::Test,
        &d32,
        None,
    )));
    assert_says(
        &msg,
        &d32.join("val_data.npz"),
        &["32x32", "imagenet32", "12288"],
    );
}

#[test]
fn imagenet_directory_layouts_and_not_found() {
    // root/Imagenet32_train_npz and root/imagenet32/Imagenet32_val_npz, as unzipped from image-net.org.
    let root = temp_dir("in-layout");
    let train = root.join("Imagenet32_train_npz");
    let val = root.join("imagenet32/Imagenet32_val_npz");
    std::fs::create_dir_all(&train).unwrap();
    std::fs::create_dir_all(&val).unwrap();
    write_batch(&train.join("train_data_batch_1.npz"), &[1], &[3], 32);
    write_batch(&val.join("val_data.npz"), &[2], &[4], 32);
    // A 64px directory beside them is not mistaken for imagenet32.
    let other = root.join("Imagenet64_val_npz");
    std::fs::create_dir_all(&other).unwrap();
    write_batch(&other.join("val_data.npz"), &[3], &[5], 64);
    let set = load(&spec(DatasetName::Imagenet32, Split::Train, &root, None)).unwrap();
    assert_images(&set, &[1], &[2], 32);
    let set = load(&spec(DatasetName::Imagenet32, Split::Test, &root, None)).unwrap();
    assert_images(&set, &[2], &[3], 32);
    let set = load(&spec(DatasetName::Imagenet64, Split::Test, &root, None)).unwrap();
    assert_images(&set, &[3], &[4], 64);
    // No 64px train files: NotFound says what was expected and where to get it.
    let msg = err_msg(load(&spec(
        DatasetName::Imagenet64,
        Split::Train,
        &root,
        None,
    )));
    assert!(
        msg.contains("imagenet64 (train split)")
            && msg.contains("train_data_batch_N.npz")
            && msg.contains("image-net.org")
            && msg.contains("--data PATH"),
        "{msg}"
    );
}

#[test]
fn imagenet_fetch_refuses() {
    let to = temp_dir("in-fetch");
    for n in [DatasetName::Imagenet32, DatasetName::Imagenet64] {
        let msg = err_msg(daed_io::fetch::fetch(n, &to));
        let size = &n.as_str()[8..];
        assert!(
            msg.contains("image-net.org")
                && msg.contains(&format!("Imagenet{size}_train_npz"))
                && msg.contains("--data DIR"),
            "{msg}"
        );
    }
    assert_eq!(std::fs::read_dir(&to).unwrap().count(), 0);
}

#[test]
fn imagenet_malformed_files() {
    let d = temp_dir("in-bad");
    let s = 32;
    let per = 3 * s * s;
    let good_data = u8s(&[2, per], rows(&[0, 1], s));
    let good_labels = i64s(&[1, 2]);
    let check = |file: &str, arrays: &[(&str, &NpyArray)], words: &[&str]| {
        let p = d.join(file);
        write_npz(&p, arrays).unwrap();
        let msg = err_msg(load(&spec(DatasetName::Imagenet32, Split::Train, &p, None)));
        assert_says(&msg, &p, words);
    };
    // Sanity: the good arrays load.
    let ok = d.join("ok.npz");
    write_npz(&ok, &[("data", &good_data), ("labels", &good_labels)]).unwrap();
    let set = load(&spec(DatasetName::Imagenet32, Split::Train, &ok, None)).unwrap();
    assert_images(&set, &[0, 1], &[0, 1], s);

    check(
        "nodata.npz",
        &[("labels", &good_labels), ("mean", &good_labels)],
        &["no `data` array", "labels, mean"],
    );
    check(
        "nolabels.npz",
        &[("data", &good_data)],
        &["no `labels` array", "keys: data"],
    );
    let floats = NpyArray::f32(&[2, per], vec![0.0; 2 * per]);
    check(
        "float.npz",
        &[("data", &floats), ("labels", &good_labels)],
        &["float32", "uint8"],
    );
    let ints = NpyArray::new(vec![2, per], NpyData::I64(vec![0; 2 * per])).unwrap();
    check(
        "int.npz",
        &[("data", &ints), ("labels", &good_labels)],
        &["`data`", "uint8"],
    );
    let short = u8s(&[2, 100], vec![0; 200]);
    check(
        "rowlen.npz",
        &[("data", &short), ("labels", &good_labels)],
        &["100 values", "3072"],
    );
    let hwc = u8s(&[2, s, s, 3], rows(&[0, 1], s));
    check(
        "hwc.npz",
        &[("data", &hwc), ("labels", &good_labels)],
        &["channels-last"],
    );
    check(
        "fewlabels.npz",
        &[("data", &good_data), ("labels", &i64s(&[1]))],
        &["`labels`", "1 values", "2 images"],
    );
    check(
        "zero.npz",
        &[("data", &good_data), ("labels", &i64s(&[1, 0]))],
        &["labels[1] = 0", "1..=1000", "0-based"],
    );
    check(
        "big.npz",
        &[("data", &good_data), ("labels", &i64s(&[1001, 1]))],
        &["labels[0] = 1001", "1..=1000"],
    );
    let float_labels = NpyArray::f64(&[2], vec![1.0, 2.0]);
    check(
        "floatlabels.npz",
        &[("data", &good_data), ("labels", &float_labels)],
        &["`labels` is float64", "integers"],
    );
    // The pickled release (no zip) is named as such.
    let pickle = d.join("train_data_batch_1");
    std::fs::write(&pickle, b"\x80\x02}q\x00").unwrap();
    let msg = err_msg(load(&spec(
        DatasetName::Imagenet32,
        Split::Train,
        &pickle,
        None,
    )));
    assert_says(&msg, &pickle, &["not an .npz", "pickled"]);
}

#[test]
fn npz_key_selection_and_small_int_labels() {
    let d = temp_dir("in-npz");
    // `<u2` labels (a plausible re-release) and an unreadable extra entry.
    let labels: Vec<u8> = [1000u16, 1].iter().flat_map(|v| v.to_le_bytes()).collect();
    let z = deflate_npz(&[
        ("mean", npy(">f8", &[1], vec![0; 8])),
        ("data", npy("|u1", &[2, 3072], rows(&[4, 5], 32))),
        ("labels", npy("<u2", &[2], labels)),
    ]);
    let p = d.join("val_data.npz");
    std::fs::write(&p, z).unwrap();
    let m = read_npz_keys(&p, &["labels"]).unwrap();
    assert_eq!(m.keys().collect::<Vec<_>>(), ["labels"]);
    assert_eq!(m["labels"].data, NpyData::I64(vec![1000, 1]));
    assert!(daed_io::npz::read_npz(&p).is_err(), "`>f8` is unsupported");
    let set = load(&spec(DatasetName::Imagenet32, Split::Test, &d, None)).unwrap();
    assert_images(&set, &[4, 5], &[999, 0], 32);
}
