//! npz/npy round trips, the numpy-written reference file, ImageSet conversions and tables.

mod common;
use common::{shared_data, temp_dir};
use daed_io::images::ImageSet;
use daed_io::npz::{read_npy, read_npz, write_npy, write_npz, NpyArray, NpyData};
use daed_io::table::{fmt_f, write_json, Table};

#[test]
fn npz_round_trip() {
    let d = temp_dir("npz-rt");
    let a = NpyArray::f32(
        &[2, 3],
        vec![0.5, -1.0, 2.0, 3.25, f32::MAX, f32::MIN_POSITIVE],
    );
    let b = NpyArray::new(vec![4], NpyData::U8(vec![0, 1, 254, 255])).unwrap();
    let c = NpyArray::new(vec![], NpyData::F64(vec![std::f64::consts::PI])).unwrap();
    let e = NpyArray::new(vec![2, 0, 3], NpyData::I64(vec![])).unwrap();
    let f = NpyArray::new(vec![3], NpyData::I64(vec![-1, 0, i64::MAX])).unwrap();
    let p = d.join("sub/out.npz");
    write_npz(
        &p,
        &[("a", &a), ("b", &b), ("c", &c), ("empty", &e), ("f", &f)],
    )
    .unwrap();
    let back = read_npz(&p).unwrap();
    assert_eq!(back.len(), 5);
    assert_eq!(back["a"], a);
    assert_eq!(back["b"], b);
    assert_eq!(back["c"], c);
    assert_eq!(back["empty"], e);
    assert_eq!(back["f"], f);
    // No temporary files left behind.
    let names: Vec<_> = std::fs::read_dir(d.join("sub"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("out.npz")]);
    let q = d.join("a.npy");
    write_npy(&q, &a).unwrap();
    assert_eq!(read_npy(&q).unwrap(), a);
    let bytes = std::fs::read(&q).unwrap();
    assert_eq!((bytes.len() - 6 * 4) % 64, 0, "header padded to 64 bytes");
    assert!(NpyArray::new(vec![3], NpyData::U8(vec![1])).is_err());
}

#[test]
fn npz_with_deflate_entries() {
    // A zip with a DEFLATE entry, built by hand (what np.savez_compressed writes).
    use std::io::Write;
    let npy = daed_io::npz::npy_to_bytes(&NpyArray::f64(&[3], vec![1.0, 2.0, 3.0]));
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&npy).unwrap();
    let comp = enc.finish().unwrap();
    let crc = crc32fast::hash(&npy);
    let name = b"x.npy";
    let mut z = Vec::new();
    let p32 = |v: &mut Vec<u8>, x: u32| v.extend(x.to_le_bytes());
    let p16 = |v: &mut Vec<u8>, x: u16| v.extend(x.to_le_bytes());
    p32(&mut z, 0x04034b50);
    for x in [20, 0, 8, 0, 0x21] {
        p16(&mut z, x)
    }
    for x in [crc, comp.len() as u32, npy.len() as u32] {
        p32(&mut z, x)
    }
    p16(&mut z, 5);
    p16(&mut z, 0);
    z.extend(name);
    z.extend(&comp);
    let cd = z.len();
    p32(&mut z, 0x02014b50);
    for x in [20, 20, 0, 8, 0, 0x21] {
        p16(&mut z, x)
    }
    for x in [crc, comp.len() as u32, npy.len() as u32] {
        p32(&mut z, x)
    }
    for x in [5, 0, 0, 0, 0] {
        p16(&mut z, x)
    }
    p32(&mut z, 0);
    p32(&mut z, 0);
    z.extend(name);
    let cd_len = z.len() - cd;
    p32(&mut z, 0x06054b50);
    for x in [0, 0, 1, 1] {
        p16(&mut z, x)
    }
    p32(&mut z, cd_len as u32);
    p32(&mut z, cd as u32);
    p16(&mut z, 0);
    let m = daed_io::npz::npz_from_bytes(&z, std::path::Path::new("mem.npz")).unwrap();
    assert_eq!(m["x"].to_f64_vec(), vec![1.0, 2.0, 3.0]);
    // A flipped data byte is caught by the CRC check.
    let mut bad = z.clone();
    bad[40] ^= 0xff;
    assert!(daed_io::npz::npz_from_bytes(&bad, std::path::Path::new("bad.npz")).is_err());
}

#[test]
fn numpy_reference_outputs() {
    let Some(d) = shared_data() else { return };
    let m = read_npz(d.join("inception/reference_outputs.npz")).unwrap();
    for (k, a) in &m {
        println!(
            "{k}: shape {:?} dtype {} ({} values)",
            a.shape,
            a.data.descr(),
            a.len()
        );
    }
    let keys: Vec<&str> = m.keys().map(|s| s.as_str()).collect();
    assert_eq!(keys, vec!["gradient_in", "gradient_out", "zeros_out"]);
    assert_eq!(m["gradient_in"].shape, vec![3, 299, 299]);
    assert_eq!(m["zeros_out"].shape, vec![2048]);
    assert_eq!(m["gradient_out"].data.descr(), "<f4");
    let z = m["zeros_out"].to_f32_vec();
    assert!(
        z.iter().all(|v| v.is_finite() && *v >= 0.0),
        "pool3 after ReLU is non-negative"
    );
}

#[test]
fn imageset_conversions() {
    let set = ImageSet::new(
        3,
        2,
        2,
        (0..24).map(|x| x as u8 * 10).collect(),
        Some(vec![1, 2]),
    )
    .unwrap();
    assert_eq!((set.len(), set.image(1)[0]), (2, 120));
    let f = set.to_f32(&[1, 0]);
    assert_eq!(f.len(), 24);
    assert!((f[0] - (120.0 / 127.5 - 1.0)).abs() < 1e-6);
    let back = ImageSet::from_f32(3, 2, 2, &f);
    assert_eq!(back.pixels, set.select(&[1, 0]).pixels);
    assert_eq!(
        ImageSet::from_f32(1, 1, 3, &[-2.0, f32::NAN, 1.5]).pixels,
        vec![0, 0, 255]
    );
    let nhwc = set.to_nhwc_u8();
    assert_eq!(&nhwc[..6], &[0, 40, 80, 10, 50, 90]);
    assert_eq!(ImageSet::from_nhwc_u8(2, 2, 2, 3, &nhwc).pixels, set.pixels);
    let gray = set.to_channels(1).unwrap();
    let y0 = (0.299f32 * 0.0 + 0.587 * 40.0 + 0.114 * 80.0).round() as u8;
    assert_eq!((gray.channels, gray.image(0)[0]), (1, y0));
    let rgb = gray.to_channels(3).unwrap();
    assert_eq!(&rgb.image(0)[..4], &rgb.image(0)[4..8]);
    assert!(set.to_channels(2).is_err());
    assert_eq!(set.take(1).labels, Some(vec![1]));
    assert_eq!(set.select(&[1, 1]).labels, Some(vec![2, 2]));
    assert!(ImageSet::new(3, 2, 2, vec![0; 13], None).is_err());
}

#[test]
fn bilinear_resize_matches_torch() {
    // torch.nn.functional.interpolate([[0, 100], [200, 255]] as 1x1x2x2, size=4, bilinear,
    // align_corners=False), rounded.
    let set = ImageSet::new(1, 2, 2, vec![0, 100, 200, 255], None).unwrap();
    let r = set.resize(4, 4);
    let want: [f32; 16] = [
        0.0, 25.0, 75.0, 100.0, 50.0, 72.1875, 116.5625, 138.75, 150.0, 166.5625, 199.6875, 216.25,
        200.0, 213.75, 241.25, 255.0,
    ];
    let want: Vec<u8> = want.iter().map(|v| v.round() as u8).collect();
    assert_eq!(r.pixels, want);
    let down = r.resize(2, 2);
    assert_eq!((down.height, down.width, down.len()), (2, 2, 1));
    let constant = ImageSet::new(1, 5, 7, vec![77; 35], None)
        .unwrap()
        .resize(3, 11);
    assert!(constant.pixels.iter().all(|&p| p == 77));
}

#[test]
fn tables_and_json() {
    let mut t = Table::new(["model", "FID", "note"]);
    t.push(["ddpm", &fmt_f(12.3456, 2), "a, b"]);
    t.push(vec!["flow|x".to_string(), fmt_f(f64::NAN, 1)]);
    assert_eq!(
        t.to_csv(),
        "model,FID,note\nddpm,12.35,\"a, b\"\nflow|x,nan\n"
    );
    let md = t.to_markdown();
    assert!(
        md.starts_with("| model   | FID   | note |\n|---------|-------|------|\n"),
        "{md}"
    );
    assert!(md.contains("flow\\|x"));
    let d = temp_dir("table");
    t.write_csv(d.join("t.csv")).unwrap();
    assert_eq!(
        std::fs::read_to_string(d.join("t.csv")).unwrap(),
        t.to_csv()
    );
    write_json(d.join("deep/t.json"), &t).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("deep/t.json")).unwrap()).unwrap();
    assert_eq!(v["rows"][0][1], "12.35");
    assert_eq!(fmt_f(f64::NEG_INFINITY, 3), "-inf");
}

#[test]
fn python_zipfile_zip64_deflate_npz() {
    // Written by Python's zipfile exactly as np.savez_compressed does (DEFLATE, force_zip64: local
    // headers carry 0xffffffff sizes and a zip64 extra field).
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/python_zip64_deflate.npz"
    );
    let m = read_npz(p).unwrap();
    assert_eq!(
        m["a"],
        NpyArray::f32(&[2, 3], vec![0.5, 1.5, -2.0, 3.0, 4.25, 5.0])
    );
    assert_eq!(m["b"].data, NpyData::I64(vec![1, -2, 3, 1 << 40]));
    assert_eq!(
        (m["c"].shape.clone(), m["c"].data.clone()),
        (vec![3], NpyData::U8(vec![7, 8, 9]))
    );
}
