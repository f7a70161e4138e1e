//! Loading a module from arrays checks every tensor by name and exact shape: an array with the
//! right number of values in the wrong shape (a weight stored transposed), a missing one and an
//! extra one are each an error naming the key.
use std::path::Path;

use burn::nn::{Linear, LinearConfig};
use daed_core::tensor_io::{load_module, module_arrays};

fn linear() -> Linear {
    let device = daed_core::device::resolve("flex").unwrap();
    LinearConfig::new(2, 3).init(&device)
}

#[test]
fn loading_checks_names_and_exact_shapes() {
    let origin = Path::new("weights.safetensors");
    let good = module_arrays(&linear(), "").unwrap();
    let w = good.keys().find(|k| k.contains("weight")).unwrap().clone();
    assert_eq!(good[&w].shape, vec![2, 3]);
    load_module(linear(), &good, "", origin).unwrap();

    let mut transposed = good.clone();
    transposed.get_mut(&w).unwrap().shape = vec![3, 2];
    let e = load_module(linear(), &transposed, "", origin)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&w) && e.contains("[3, 2]") && e.contains("weights.safetensors"),
        "{e}"
    );

    let mut missing = good.clone();
    missing.remove(&w);
    let e = load_module(linear(), &missing, "", origin)
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing") && e.contains(&w), "{e}");

    let mut extra = good.clone();
    extra.insert("head.weight".into(), good[&w].clone());
    let e = load_module(linear(), &extra, "", origin)
        .unwrap_err()
        .to_string();
    assert!(e.contains("head.weight"), "{e}");
}
