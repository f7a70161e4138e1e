//! The bits/dim evaluation clips the x0 prediction, as improved-diffusion's `calc_bpd_loop`
//! (training does not): both against values from improved-diffusion's own `_vb_terms_bpd`
//! (fixtures/nll_clip.json, made by fixtures/make_nll_clip_fixture.py).
use daed_core::burn::tensor::{Tensor, TensorData};
use daed_core::diffusion::{GaussianDiffusion, ModelVarType};
use daed_core::tensor_io::to_vec;

fn floats(v: &serde_json::Value) -> Vec<f32> {
    serde_json::from_value::<Vec<f64>>(v.clone())
        .unwrap()
        .into_iter()
        .map(|x| x as f32)
        .collect()
}

#[test]
fn vb_terms_match_improved_diffusion_with_and_without_clipping() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/nll_clip.json"
    ))
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let betas: Vec<f64> = serde_json::from_value(v["betas"].clone()).unwrap();
    let t: Vec<usize> = serde_json::from_value(v["t"].clone()).unwrap();
    let shape: [usize; 4] = serde_json::from_value(v["shape"].clone()).unwrap();
    let d = GaussianDiffusion::from_betas(
        betas.clone(),
        (0..betas.len()).collect(),
        ModelVarType::FixedLarge,
    );
    let device = daed_core::device::resolve("flex").unwrap();
    let tensor =
        |key: &str| Tensor::<4>::from_data(TensorData::new(floats(&v[key]), shape), &device);
    let clipped: Vec<f64> = serde_json::from_value(v["clipped"].clone()).unwrap();
    let unclipped: Vec<f64> = serde_json::from_value(v["unclipped"].clone()).unwrap();
    // The fixture must tell the two apart, or the test could not fail.
    assert!(clipped
        .iter()
        .zip(&unclipped)
        .any(|(a, b)| (a - b).abs() > 0.1 * b.abs().max(1e-3)));
    for (clip, want) in [(true, &clipped), (false, &unclipped)] {
        let got = to_vec(d.vb_terms_bpd_with(
            tensor("model_out"),
            tensor("x_start"),
            tensor("x_t"),
            &t,
            clip,
        ))
        .unwrap();
        for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
            let tol = 1e-4 * w.abs().max(1e-2);
            assert!(
                (f64::from(*g) - w).abs() < tol,
                "clip {clip}, sample {i} (t = {}): daed {g}, improved-diffusion {w}",
                t[i]
            );
        }
    }
    // Training's term is the unclipped one.
    let train =
        to_vec(d.vb_terms_bpd(tensor("model_out"), tensor("x_start"), tensor("x_t"), &t)).unwrap();
    for (g, w) in train.iter().zip(&unclipped) {
        assert!((f64::from(*g) - w).abs() < 1e-4 * w.abs().max(1e-2));
    }
}
