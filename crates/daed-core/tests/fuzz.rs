//! Bounded fuzzing of the parsers daed-core runs on user files: safetensors (header and data),
//! a checkpoint's `state.json`, and experiment configs (TOML, then the checks that need the image
//! shape and the memory estimate). No input may panic, and every error must name its file.
//!
//! Each test runs `DAED_FUZZ_SECS` seconds (default 1) with seed `DAED_FUZZ_SEED` (default
//! 0xdaed); `--nocapture` shows the inputs run.
use std::collections::BTreeMap;
use std::panic::RefUnwindSafe;
use std::path::Path;

use daed_core::config::ExperimentConfig;
use daed_core::diffusion::step_sampler::{StepSampler, StepSamplerKind};
use daed_core::tensor_io::{parse_safetensors, safetensors_bytes, NamedArray};
use daed_core::train::checkpoint::{CheckpointState, FORMAT_VERSION};

const ORIGIN: &str = "fuzz-input.bin";

fn run(parser: &str, seeds: &[Vec<u8>], parse: impl Fn(&[u8]) + RefUnwindSafe) {
    daed_io::fuzz::check(parser, seeds, parse);
}

/// Fails (a finding) when `r` is an error that does not name the input's file.
fn named<T, E: std::fmt::Display>(r: Result<T, E>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains(ORIGIN), "error does not name the file: {msg}");
            None
        }
    }
}

fn shipped_configs() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// A config, then what training checks before any work: the shape-dependent checks and the
/// memory estimate (in checked arithmetic).
fn parse_config(b: &[u8]) {
    let Ok(text) = std::str::from_utf8(b) else {
        return;
    };
    if let Some(cfg) = named(ExperimentConfig::from_toml(text, ORIGIN)) {
        for shape in [[1, 28, 28], [3, 32, 32], [3, 64, 64]] {
            if cfg.validate_for_shape(shape).is_ok() {
                let _ = daed_core::memory::training_bytes(&cfg, shape);
                let _ = daed_core::memory::sampling_bytes(&cfg, shape, 64, 64);
            }
        }
    }
}

#[test]
fn fuzz_config_toml() {
    run("config", &shipped_configs(), parse_config);
}

fn state_seeds() -> Vec<Vec<u8>> {
    let configs = shipped_configs();
    [
        (0usize, StepSamplerKind::Uniform),
        (3, StepSamplerKind::LossSecondMoment),
    ]
    .iter()
    .map(|&(i, kind)| {
        let text = String::from_utf8(configs[i].clone()).unwrap();
        let cfg = ExperimentConfig::from_toml(&text, "seed").unwrap();
        let state = CheckpointState {
            format_version: FORMAT_VERSION,
            step: 40,
            model_kind: cfg.model.to_string(),
            image_shape: [1, 28, 28],
            config_toml: cfg.to_toml(),
            seed: 0,
            adam_t: 40,
            step_sampler: StepSampler::new(kind, &[1e-4, 2e-4, 3e-4]),
            checksums: BTreeMap::from([("model.safetensors".into(), "ab".repeat(32))]),
        };
        serde_json::to_vec_pretty(&state).unwrap()
    })
    .collect()
}

#[test]
fn fuzz_state_json() {
    run("state.json", &state_seeds(), |b| {
        if let Some((state, _)) = named(CheckpointState::parse(b, Path::new(ORIGIN))) {
            let _ = state.step_sampler.check(3);
        }
    });
}

fn safetensors_seeds() -> Vec<Vec<u8>> {
    let arrays = |specs: &[(&str, Vec<usize>)]| -> BTreeMap<String, NamedArray> {
        specs
            .iter()
            .map(|(name, shape)| {
                let n: usize = shape.iter().product();
                let data = (0..n).map(|i| i as f32 * 0.5 - 1.0).collect();
                let a = NamedArray {
                    shape: shape.clone(),
                    data,
                };
                (name.to_string(), a)
            })
            .collect()
    };
    let meta = BTreeMap::from([("step".to_string(), "3".to_string())]);
    vec![
        safetensors_bytes(&arrays(&[("w", vec![2, 3]), ("b", vec![3])]), &meta),
        safetensors_bytes(
            &arrays(&[("conv.weight", vec![4, 1, 3, 3])]),
            &BTreeMap::new(),
        ),
        safetensors_bytes(&arrays(&[("scalar", vec![]), ("empty", vec![0, 4])]), &meta),
    ]
}

#[test]
fn fuzz_safetensors() {
    run("safetensors", &safetensors_seeds(), |b| {
        named(parse_safetensors(b, Path::new(ORIGIN)));
    });
}

/// The seeds themselves parse, so the fuzzer starts from valid inputs.
#[test]
fn seeds_parse() {
    for s in safetensors_seeds() {
        parse_safetensors(&s, Path::new(ORIGIN)).unwrap();
    }
    for s in state_seeds() {
        let (st, _) = CheckpointState::parse(&s, Path::new(ORIGIN)).unwrap();
        st.step_sampler.check(3).unwrap();
    }
}
