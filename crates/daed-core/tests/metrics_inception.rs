//! The FID Inception port against the reference outputs, its pre-processing, and bad inputs.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use daed_core::burn;
use daed_core::metrics::weights::WeightSource;
use daed_core::metrics::{default_weights, extract, FidInception, Preprocess, SPATIAL_DIM};
use daed_core::tensor_io::read_safetensors;
use daed_io::images::ImageSet;
use daed_io::npz::read_npz;

fn weights() -> PathBuf {
    default_weights().expect("FID Inception weights under ../shared/data/inception")
}

fn vec2(t: Tensor<2>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

fn vec4(t: Tensor<4>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn reproduces_reference_pool3_outputs() {
    let w = weights();
    let reference = read_npz(w.parent().unwrap().join("reference_outputs.npz")).unwrap();
    let device = Device::flex();
    let net = FidInception::open(&w, &device).unwrap();
    assert!(!net.has_logits(), "the shared file has no logits layer");
    let grad = reference["gradient_in"].to_f32_vec();
    assert_eq!(grad.len(), 3 * 299 * 299);
    let mut input = vec![0.0f32; 3 * 299 * 299];
    input.extend_from_slice(&grad);
    let x: Tensor<4> = Tensor::from_data(TensorData::new(input, [2, 3, 299, 299]), &device);
    let f = net.forward(x);
    assert_eq!(f.pool.dims(), [2, 2048]);
    assert_eq!(f.spatial.dims(), [2, SPATIAL_DIM]);
    assert!(f.logits.is_none());
    let pool = vec2(f.pool);
    let dz = max_abs(&pool[..2048], &reference["zeros_out"].to_f32_vec());
    let dg = max_abs(&pool[2048..], &reference["gradient_out"].to_f32_vec());
    eprintln!("max abs diff: zeros {dz:.3e}, gradient {dg:.3e}");
    assert!(dz <= 1e-4, "zeros_out differs by {dz}");
    assert!(dg <= 1e-4, "gradient_out differs by {dg}");
    // The sFID features are post-ReLU activations.
    let s = vec2(f.spatial);
    assert!(s.iter().all(|v| *v >= 0.0 && v.is_finite()));
}

/// PyTorch's bilinear resize (align_corners = false), written out for one plane.
fn torch_bilinear(src: &[f64], h: usize, w: usize, oh: usize, ow: usize) -> Vec<f64> {
    let coord = |o: usize, n_in: usize, n_out: usize| {
        let x = ((o as f64 + 0.5) * n_in as f64 / n_out as f64 - 0.5).max(0.0);
        let i0 = (x.floor() as usize).min(n_in - 1);
        let i1 = (i0 + 1).min(n_in - 1);
        (i0, i1, x - i0 as f64)
    };
    let mut out = Vec::with_capacity(oh * ow);
    for y in 0..oh {
        let (y0, y1, fy) = coord(y, h, oh);
        for x in 0..ow {
            let (x0, x1, fx) = coord(x, w, ow);
            let top = src[y0 * w + x0] * (1.0 - fx) + src[y0 * w + x1] * fx;
            let bot = src[y1 * w + x0] * (1.0 - fx) + src[y1 * w + x1] * fx;
            out.push(top * (1.0 - fy) + bot * fy);
        }
    }
    out
}

#[test]
fn pytorch_fid_preprocessing_is_bilinear_half_pixel_then_2x_minus_1() {
    let device = Device::flex();
    let (h, w) = (28, 28);
    let pixels: Vec<u8> = (0..h * w).map(|i| ((i * 37 + i / 7) % 256) as u8).collect();
    let gray = ImageSet::new(1, h, w, pixels.clone(), None).unwrap();
    let x = vec4(Preprocess::PytorchFid.batch(&gray, 0, 1, &device).unwrap());
    assert_eq!(x.len(), 3 * 299 * 299);
    let src: Vec<f64> = pixels.iter().map(|&p| p as f64 / 255.0).collect();
    let want: Vec<f32> = torch_bilinear(&src, h, w, 299, 299)
        .into_iter()
        .map(|v| (2.0 * v - 1.0) as f32)
        .collect();
    let plane = 299 * 299;
    for c in 0..3 {
        let d = max_abs(&x[c * plane..(c + 1) * plane], &want);
        assert!(
            d < 1e-5,
            "channel {c} differs from PyTorch's bilinear by {d}"
        );
    }
    // A gray image equals the RGB image with three equal planes.
    let rgb = gray.to_channels(3).unwrap();
    let y = vec4(Preprocess::PytorchFid.batch(&rgb, 0, 1, &device).unwrap());
    assert_eq!(max_abs(&x, &y), 0.0);
    // 299x299 input: no resize, only the scaling.
    let big = ImageSet::new(1, 299, 299, vec![255; plane], None).unwrap();
    let z = vec4(Preprocess::PytorchFid.batch(&big, 0, 1, &device).unwrap());
    assert!(z.iter().all(|v| (*v - 1.0).abs() < 1e-7));
}

#[test]
fn preprocessing_rejects_bad_images() {
    let device = Device::flex();
    let four = ImageSet::new(4, 8, 8, vec![0; 4 * 64], None).unwrap();
    let e = Preprocess::PytorchFid
        .batch(&four, 0, 1, &device)
        .unwrap_err();
    assert!(e.to_string().contains("4 channels"), "{e}");
    let one = ImageSet::new(1, 8, 8, vec![0; 64], None).unwrap();
    assert!(Preprocess::PytorchFid.batch(&one, 0, 2, &device).is_err());
    assert!("clean-fid?".parse::<Preprocess>().is_err());
}

fn shared_arrays() -> (BTreeMap<String, daed_core::tensor_io::NamedArray>, PathBuf) {
    let w = weights();
    (read_safetensors(&w).unwrap().0, w)
}

#[test]
fn weight_files_with_problems_are_clear_errors() {
    let device = Device::flex();
    let (mut arrays, w) = shared_arrays();
    arrays.remove("mixed_9.tower_1_mixed_conv_1.var");
    let e = FidInception::load(&WeightSource::new(arrays, &w).unwrap(), &device).unwrap_err();
    assert!(
        e.to_string()
            .contains("missing tensor `mixed_9.tower_1_mixed_conv_1.var`"),
        "{e}"
    );

    let (mut arrays, w) = shared_arrays();
    let a = arrays.get_mut("mixed_4.tower.conv_1.weight").unwrap();
    a.shape = vec![128, 128, 7, 1];
    let e = FidInception::load(&WeightSource::new(arrays, &w).unwrap(), &device).unwrap_err();
    assert!(e.to_string().contains("mixed_4.tower.conv_1.weight"), "{e}");

    let e = WeightSource::new(BTreeMap::new(), Path::new("x.safetensors"))
        .err()
        .unwrap();
    assert!(e.to_string().contains("not FID Inception weights"), "{e}");
    let e =
        FidInception::open(Path::new("pt_inception-2015-12-05-6726825d.pth"), &device).unwrap_err();
    assert!(e.to_string().contains("not found"), "{e}");
    // A .pth is read (here a small state dict that is not the Inception): the error is about
    // its contents, not its format.
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../daed-io/tests/fixtures/seq_zip.pth");
    let e = FidInception::open(&fixture, &device).unwrap_err();
    assert!(e.to_string().contains("not FID Inception weights"), "{e}");
    let e =
        FidInception::open(Path::new("/nonexistent/inception.safetensors"), &device).unwrap_err();
    assert!(e.to_string().contains("not found"), "{e}");
}

#[test]
fn torchvision_names_load_the_same_network_with_logits() {
    // Rename the shared file's tensors to pytorch-fid's torchvision names (with unit gamma) and
    // add a logits layer: the network must be the same and the logits pool . W^T.
    let device = Device::flex();
    let (arrays, w) = shared_arrays();
    let tf = FidInception::load(&WeightSource::new(arrays.clone(), &w).unwrap(), &device).unwrap();
    let tv_arrays = to_torchvision(&arrays);
    let src = WeightSource::new(tv_arrays, Path::new("tv.safetensors")).unwrap();
    let tv = FidInception::load(&src, &device).unwrap();
    assert!(tv.has_logits());
    let set = ImageSet::new(
        3,
        32,
        32,
        (0..3 * 32 * 32).map(|i| (i % 251) as u8).collect(),
        None,
    )
    .unwrap();
    let a = extract(&tf, Preprocess::PytorchFid, &set, 1, &mut |_, _| {}).unwrap();
    let b = extract(&tv, Preprocess::PytorchFid, &set, 1, &mut |_, _| {}).unwrap();
    assert!(max_abs(&a.pool, &b.pool) < 1e-5);
    assert!(max_abs(&a.spatial, &b.spatial) < 1e-5);
    let logits = b.logits.unwrap();
    assert_eq!(logits.len(), 1008);
    // fc.weight[j][i] = (i == j) for j < 1008: the logits are the first 1008 pool features.
    assert!(max_abs(&logits, &b.pool[..1008]) < 1e-6);
}

fn to_torchvision(
    tf: &BTreeMap<String, daed_core::tensor_io::NamedArray>,
) -> BTreeMap<String, daed_core::tensor_io::NamedArray> {
    use daed_core::tensor_io::NamedArray;
    let mut map: Vec<(String, String)> = vec![
        ("conv".into(), "Conv2d_1a_3x3".into()),
        ("conv_1".into(), "Conv2d_2a_3x3".into()),
        ("conv_2".into(), "Conv2d_2b_3x3".into()),
        ("conv_3".into(), "Conv2d_3b_1x1".into()),
        ("conv_4".into(), "Conv2d_4a_3x3".into()),
    ];
    let a = [
        ("conv", "branch1x1"),
        ("tower.conv", "branch5x5_1"),
        ("tower.conv_1", "branch5x5_2"),
        ("tower_1.conv", "branch3x3dbl_1"),
        ("tower_1.conv_1", "branch3x3dbl_2"),
        ("tower_1.conv_2", "branch3x3dbl_3"),
        ("tower_2.conv", "branch_pool"),
    ];
    let b = [
        ("conv", "branch3x3"),
        ("tower.conv", "branch3x3dbl_1"),
        ("tower.conv_1", "branch3x3dbl_2"),
        ("tower.conv_2", "branch3x3dbl_3"),
    ];
    let c = [
        ("conv", "branch1x1"),
        ("tower.conv", "branch7x7_1"),
        ("tower.conv_1", "branch7x7_2"),
        ("tower.conv_2", "branch7x7_3"),
        ("tower_1.conv", "branch7x7dbl_1"),
        ("tower_1.conv_1", "branch7x7dbl_2"),
        ("tower_1.conv_2", "branch7x7dbl_3"),
        ("tower_1.conv_3", "branch7x7dbl_4"),
        ("tower_1.conv_4", "branch7x7dbl_5"),
        ("tower_2.conv", "branch_pool"),
    ];
    let d = [
        ("tower.conv", "branch3x3_1"),
        ("tower.conv_1", "branch3x3_2"),
        ("tower_1.conv", "branch7x7x3_1"),
        ("tower_1.conv_1", "branch7x7x3_2"),
        ("tower_1.conv_2", "branch7x7x3_3"),
        ("tower_1.conv_3", "branch7x7x3_4"),
    ];
    let e = [
        ("conv", "branch1x1"),
        ("tower_conv", "branch3x3_1"),
        ("tower_mixed_conv", "branch3x3_2a"),
        ("tower_mixed_conv_1", "branch3x3_2b"),
        ("tower_1_conv", "branch3x3dbl_1"),
        ("tower_1_conv_1", "branch3x3dbl_2"),
        ("tower_1_mixed_conv", "branch3x3dbl_3a"),
        ("tower_1_mixed_conv_1", "branch3x3dbl_3b"),
        ("tower_2_conv", "branch_pool"),
    ];
    type Leaves<'a> = &'a [(&'a str, &'a str)];
    let blocks: [(&str, &str, Leaves); 11] = [
        ("mixed", "Mixed_5b", &a),
        ("mixed_1", "Mixed_5c", &a),
        ("mixed_2", "Mixed_5d", &a),
        ("mixed_3", "Mixed_6a", &b),
        ("mixed_4", "Mixed_6b", &c),
        ("mixed_5", "Mixed_6c", &c),
        ("mixed_6", "Mixed_6d", &c),
        ("mixed_7", "Mixed_6e", &c),
        ("mixed_8", "Mixed_7a", &d),
        ("mixed_9", "Mixed_7b", &e),
        ("mixed_10", "Mixed_7c", &e),
    ];
    for (tfb, tvb, leaves) in blocks {
        for (tfl, tvl) in leaves {
            map.push((format!("{tfb}.{tfl}"), format!("{tvb}.{tvl}")));
        }
    }
    let mut out = BTreeMap::new();
    for (tfn, tvn) in map {
        let wt = tf[&format!("{tfn}.weight")].clone();
        let n = wt.shape[0];
        out.insert(format!("{tvn}.conv.weight"), wt);
        let v = |k: &str| tf[&format!("{tfn}.{k}")].clone();
        out.insert(format!("{tvn}.bn.bias"), v("beta"));
        out.insert(format!("{tvn}.bn.running_mean"), v("mean"));
        out.insert(format!("{tvn}.bn.running_var"), v("var"));
        out.insert(
            format!("{tvn}.bn.weight"),
            NamedArray {
                shape: vec![n],
                data: vec![1.0; n],
            },
        );
    }
    assert_eq!(out.len(), 94 * 5);
    let mut fc = vec![0.0f32; 1008 * 2048];
    for j in 0..1008 {
        fc[j * 2048 + j] = 1.0;
    }
    out.insert(
        "fc.weight".into(),
        NamedArray {
            shape: vec![1008, 2048],
            data: fc,
        },
    );
    out.insert(
        "fc.bias".into(),
        NamedArray {
            shape: vec![1008],
            data: vec![0.5; 1008],
        },
    );
    out
}

/// pytorch-fid's weights as a `.pth` (set `DAED_PT_INCEPTION`, e.g. to the output of
/// `bench/make_pt_inception.py` or to `pt_inception-2015-12-05-6726825d.pth`): the network loads
/// and reproduces the reference outputs.
#[test]
fn pth_weights_reproduce_the_reference_when_given() {
    let Some(pth) = std::env::var_os("DAED_PT_INCEPTION") else {
        eprintln!("skipped: set DAED_PT_INCEPTION to a pytorch-fid .pth file");
        return;
    };
    let reference = read_npz(weights().parent().unwrap().join("reference_outputs.npz")).unwrap();
    let device = Device::flex();
    let net = FidInception::open(Path::new(&pth), &device).unwrap();
    let x: Tensor<4> = Tensor::from_data(
        TensorData::new(reference["gradient_in"].to_f32_vec(), [1, 3, 299, 299]),
        &device,
    );
    let pool = vec2(net.forward(x).pool);
    let d = max_abs(&pool, &reference["gradient_out"].to_f32_vec());
    eprintln!(
        "{}: max abs diff {d:.3e}, logits {}",
        Path::new(&pth).display(),
        net.has_logits()
    );
    assert!(d <= 1e-4, "gradient_out differs by {d}");
}
