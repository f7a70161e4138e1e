//! PyTorch checkpoints imported as daed runs give PyTorch's outputs: each fixture of
//! `fixtures/torch_import` (made by `make_import_fixtures.py` from improved-diffusion's and the
//! paper code's own modules, every parameter randomised) is imported with `daed import` and run
//! with `daed forward`; the outputs must match PyTorch's to 1e-4 of their largest magnitude.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use daed_io::npz::{read_npz, NpyArray, NpyData};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/torch_import");

fn daed(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_daed"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn ok(args: &[&str]) -> String {
    let (good, text) = daed(args);
    assert!(good, "daed {args:?} failed:\n{text}");
    text
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("daed-torch-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn f32s(a: &NpyArray) -> Vec<f32> {
    match &a.data {
        NpyData::F32(v) => v.clone(),
        other => panic!("expected float32, got {}", other.descr()),
    }
}

/// Imports case `name` into `dir/run`; returns the run directory.
fn import(name: &str, dir: &Path) -> PathBuf {
    let case = Path::new(FIXTURES).join(name);
    let repo = std::fs::read_to_string(case.join("repo.txt")).unwrap();
    let flags = std::fs::read_to_string(case.join("flags.txt")).unwrap();
    let run = dir.join("run");
    let mut args: Vec<String> = vec![
        "import".into(),
        repo.trim().into(),
        "--flags".into(),
        flags.trim().into(),
        "--out".into(),
        run.display().to_string(),
    ];
    if case.join("model.pt").exists() {
        args.extend([
            "--model".into(),
            case.join("model.pt").display().to_string(),
        ]);
    } else {
        args.extend([
            "--dae".into(),
            case.join("model_part_1.pt").display().to_string(),
            "--generator".into(),
            case.join("model_part_2.pt").display().to_string(),
        ]);
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&refs);
    run
}

/// `daed forward` on the case's inputs; the arrays it wrote.
fn forward(run: &Path, name: &str, dir: &Path) -> BTreeMap<String, NpyArray> {
    let input = Path::new(FIXTURES).join(name).join("io.npz");
    let reference = read_npz(&input).unwrap();
    // daed forward reads x, t and y only.
    let inputs: Vec<(&str, &NpyArray)> = ["x", "t", "y"]
        .iter()
        .filter_map(|k| reference.get(*k).map(|a| (*k, a)))
        .collect();
    let inp = dir.join("in.npz");
    daed_io::npz::write_npz(&inp, &inputs).unwrap();
    let out = dir.join("out.npz");
    ok(&[
        "forward",
        "--checkpoint",
        run.to_str().unwrap(),
        "--input",
        inp.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    read_npz(&out).unwrap()
}

/// The largest difference relative to the largest magnitude of `want`.
fn rel_err(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs() as f64));
    assert!(
        scale > 1e-3,
        "the reference output is ~0: the check would be vacuous"
    );
    let diff = got
        .iter()
        .zip(want)
        .fold(0f64, |m, (a, b)| m.max((a - b).abs() as f64));
    diff / scale
}

fn check_case(name: &str) {
    let dir = tmp(name);
    let run = import(name, &dir);
    let got = forward(&run, name, &dir);
    let want = read_npz(Path::new(FIXTURES).join(name).join("io.npz")).unwrap();
    let mut checked = 0;
    for key in ["out", "out_dae"] {
        let Some(w) = want.get(key) else { continue };
        let g = got
            .get(key)
            .unwrap_or_else(|| panic!("{name}: no `{key}` written"));
        assert_eq!(g.shape, w.shape, "{name}: `{key}` shape");
        let e = rel_err(&f32s(g), &f32s(w));
        assert!(
            e <= 1e-4,
            "{name}: `{key}` differs from PyTorch's by {e:.2e} (relative)"
        );
        checked += 1;
    }
    assert!(checked > 0, "{name}: nothing compared");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn gray28_with_attention_at_full_resolution_matches_pytorch() {
    check_case("gray28_attn_full");
}

#[test]
fn color32_learned_sigma_cosine_4000_rescaled_matches_pytorch() {
    check_case("color32_sigma_cosine4000");
}

#[test]
fn guided_diffusions_new_attention_order_matches_pytorch() {
    check_case("new_attention_order");
}

#[test]
fn class_conditional_matches_pytorch() {
    check_case("class_cond");
}

#[test]
fn the_papers_two_part_daed_matches_pytorch() {
    check_case("two_part_daed");
}

/// A square linear weight left untransposed has the right shape, so only the outputs can tell:
/// loading the imported run with one square weight transposed back must break the match.
#[test]
fn an_untransposed_square_weight_is_caught() {
    let name = "gray28_attn_full";
    let dir = tmp("untransposed");
    let run = import(name, &dir);
    let ck = daed_core::train::Checkpoint::open(&run).unwrap();
    let mut arrays = ck
        .tensors(daed_core::train::checkpoint::TensorFile::Ema)
        .unwrap();
    let w = arrays.get_mut("time_embed_2.weight").unwrap();
    let [r, c] = [w.shape[0], w.shape[1]];
    assert_eq!(r, c, "time_embed.2 is square");
    let t: Vec<f32> = (0..r * c).map(|i| w.data[(i % c) * c + i / c]).collect();
    w.data = t;
    // Write it back as the run's EMA and model weights (a new checkpoint step).
    let state = ck.state.clone();
    let model = arrays.clone();
    let state = daed_core::train::checkpoint::CheckpointState {
        step: state.step + 1,
        checksums: Default::default(),
        ..state
    };
    daed_core::train::checkpoint::save(&run, state, [model, arrays, BTreeMap::new()], 0).unwrap();
    let got = forward(&run, name, &dir);
    let want = read_npz(Path::new(FIXTURES).join(name).join("io.npz")).unwrap();
    let e = rel_err(&f32s(&got["out"]), &f32s(&want["out"]));
    assert!(
        e > 1e-3,
        "an untransposed square weight went unnoticed ({e:.2e})"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_imports_are_errors_naming_the_problem() {
    let dir = tmp("bad");
    let case = Path::new(FIXTURES).join("gray28_attn_full");
    let model = case.join("model.pt");
    let flags = std::fs::read_to_string(case.join("flags.txt")).unwrap();
    let run = dir.join("run");
    let try_import = |flags: &str| {
        daed(&[
            "import",
            "analysing-ddgm",
            "--flags",
            flags,
            "--model",
            model.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
        ])
    };
    // Flags that describe another network: a key is missing or has another shape.
    let (good, text) = try_import(&flags.replace("--num_channels 32", "--num_channels 64"));
    assert!(!good && text.contains("shape"), "{text}");
    let (good, text) =
        try_import(&flags.replace("--attention_resolutions 28", "--attention_resolutions ''"));
    assert!(
        !good && (text.contains("attn") || text.contains("qkv")),
        "{text}"
    );
    let (good, text) = try_import(&format!(
        "{} --class_cond True --num_classes 10",
        flags.trim()
    ));
    // The paper code's one-hot conditioning shortens the time embedding.
    assert!(!good && text.contains("time_embed.2.weight"), "{text}");
    let (good, text) = try_import(&format!("{} --num_chanels 3", flags.trim()));
    assert!(!good && text.contains("num_chanels"), "{text}");
    assert!(
        !run.join("checkpoints").exists(),
        "a failed import wrote a run"
    );
    // A run that exists is never overwritten.
    ok(&[
        "import",
        "analysing-ddgm",
        "--flags",
        flags.trim(),
        "--model",
        model.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ]);
    let (good, text) = try_import(flags.trim());
    assert!(!good && text.contains("already holds a run"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A class-conditional import samples the class asked for (the labels go in the .npz as
/// guided-diffusion writes them); without `--class`, with a class out of range, or in an
/// analysis (which has no labels to give), it is a clear error.
#[test]
fn an_imported_class_conditional_model_samples_a_given_class() {
    let dir = tmp("classes");
    let run = import("class_cond", &dir);
    let r = run.to_str().unwrap();
    let sample = |class: &str, out: &str| {
        let out = dir.join(out);
        let mut args = vec!["sample", "--checkpoint", r, "--n", "2", "--steps", "4"];
        args.extend(["--out", out.to_str().unwrap()]);
        if !class.is_empty() {
            args.extend(["--class", class]);
        }
        let (good, text) = daed(&args);
        (good, text, out)
    };
    let (good, text, out) = sample("3", "s3");
    assert!(good, "{text}");
    let npz = read_npz(out.join("n2_ancestral4_seed0_class3.npz")).unwrap();
    assert_eq!(npz["arr_1"].data, NpyData::I64(vec![3, 3]));
    let (_, _, out7) = sample("7", "s7");
    let other = read_npz(out7.join("n2_ancestral4_seed0_class7.npz")).unwrap();
    assert_ne!(
        npz["arr_0"].data, other["arr_0"].data,
        "the class changes the samples"
    );
    let (good, text, _) = sample("", "none");
    assert!(!good && text.contains("--class"), "{text}");
    let (good, text, _) = sample("10", "big");
    assert!(!good && text.contains("out of range"), "{text}");
    let (good, text) = daed(&[
        "analyze",
        "recon",
        "--checkpoint",
        r,
        "--dataset",
        "mnist",
        "--out",
        dir.join("rec").to_str().unwrap(),
    ]);
    assert!(!good && text.contains("class-conditional"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The paper's two-part DAED imported, then a new DAE trained two-stage over its generator
/// (the `linear-combine` process): the run trains, its generator is the imported one, and it
/// samples.
#[test]
fn a_two_stage_dae_trains_over_an_imported_two_part_generator() {
    use daed_core::config::{DaedMode, ExperimentConfig};
    let dir = tmp("two-stage");
    let run = import("two_part_daed", &dir);
    let ck = daed_core::train::Checkpoint::open(&run).unwrap();
    let mut cfg: ExperimentConfig = ck.config.clone();
    cfg.name = "dae".into();
    cfg.daed.mode = DaedMode::TwoStage;
    cfg.daed.ddgm = Some(run.clone());
    cfg.data.dataset = "fashion-mnist-demo".into();
    cfg.data.limit = Some(16);
    cfg.train.steps = 2;
    cfg.train.batch_size = 4;
    cfg.train.checkpoint_every = 2;
    cfg.sample.n = 2;
    cfg.train.out_dir = Some(dir.join("dae"));
    let toml = dir.join("dae.toml");
    std::fs::write(&toml, cfg.to_toml()).unwrap();
    ok(&["train", "--config", toml.to_str().unwrap()]);
    let trained = daed_core::train::Checkpoint::open(&dir.join("dae")).unwrap();
    let gen = |c: &daed_core::train::Checkpoint| {
        c.tensors(daed_core::train::checkpoint::TensorFile::Ema)
            .unwrap()["generator.out_conv.weight"]
            .data
            .clone()
    };
    assert_eq!(
        gen(&trained),
        gen(&ck),
        "the generator is the imported one, frozen"
    );
    let out = dir.join("samples");
    let d = dir.join("dae");
    ok(&[
        "sample",
        "--checkpoint",
        d.to_str().unwrap(),
        "--n",
        "2",
        "--steps",
        "3",
        "--class",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    // A DDGM-style switch DAE cannot take a DAED as its generator.
    cfg.daed.process = daed_core::config::DaedProcess::Switch;
    cfg.train.out_dir = Some(dir.join("bad"));
    std::fs::write(&toml, cfg.to_toml()).unwrap();
    let (good, text) = daed(&["train", "--config", toml.to_str().unwrap()]);
    assert!(!good && text.contains("DDGM"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
