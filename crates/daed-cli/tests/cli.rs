//! The binary's user-facing errors and a short end-to-end run.
use std::process::Command;

fn daed(args: &[&str]) -> (bool, String) {
    let shared = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data");
    let out = Command::new(env!("CARGO_BIN_EXE_daed"))
        .env("DAED_DATA", shared)
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

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("daed-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `daed train --config cfg --out run` with `extra` arguments: success and output.
fn train(cfg: &std::path::Path, run: &std::path::Path, extra: &[&str]) -> (bool, String) {
    let mut args = vec![
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    daed(&args)
}

/// Writes `text` as `d/c.toml`, trains it into `d/run` and returns the run directory.
fn train_config(d: &std::path::Path, text: &str) -> std::path::PathBuf {
    let cfg = d.join("c.toml");
    std::fs::write(&cfg, text).unwrap();
    let run = d.join("run");
    let (ok, t) = train(&cfg, &run, &[]);
    assert!(ok, "{t}");
    run
}

/// The demo preset shrunk to a few seconds: 2 steps, 8 channels, 5 sampling steps, 4 samples.
fn tiny_demo_config() -> String {
    include_str!("../../../configs/demo.toml")
        .replace("steps = 600", "steps = 2")
        .replace("model_channels = 16", "model_channels = 8")
        .replace("num_heads = 2", "num_heads = 1")
        .replace("respacing = \"100\"", "respacing = \"5\"")
        .replace("n = 64", "n = 4")
}

#[test]
fn commands_reject_bad_input_with_clear_errors() {
    let (ok, t) = daed(&["sample", "--checkpoint", "/no/such/run"]);
    assert!(!ok && t.contains("/no/such/run"), "{t}");
    let (ok, t) = daed(&[
        "analyze",
        "recon",
        "--checkpoint",
        "/no/such/run",
        "--dataset",
        "mnist",
        "--out",
        "/tmp/x",
    ]);
    assert!(!ok && t.contains("/no/such/run"), "{t}");
    let (ok, t) = daed(&[
        "analyze",
        "losses",
        "--checkpoint",
        "/no/such/run",
        "--dataset",
        "mnist",
        "--out",
        "/tmp/x",
    ]);
    assert!(!ok && t.contains("/no/such/run"), "{t}");
    let (ok, t) = daed(&[
        "analyze",
        "snr",
        "--dataset",
        "imagenet9",
        "--out",
        "/tmp/x",
    ]);
    assert!(!ok && t.contains("imagenet9"), "{t}");
    let (ok, t) = daed(&[
        "analyze",
        "snr",
        "--dataset",
        "demo",
        "--schedule",
        "quadratic",
        "--out",
        "/tmp/x",
    ]);
    assert!(!ok && t.contains("quadratic"), "{t}");
    let (ok, t) = daed(&["data", "info", "mnist", "--data", "/no/such/dir"]);
    assert!(!ok && t.contains("/no/such/dir"), "{t}");
    let d = tmp("badcfg");
    let cfg = d.join("bad.toml");
    std::fs::write(&cfg, "[train]\nbatch_size = 0\n").unwrap();
    let (ok, t) = daed(&["train", "--config", cfg.to_str().unwrap()]);
    assert!(
        !ok && t.contains("train.batch_size") && t.contains("bad.toml"),
        "{t}"
    );
    std::fs::write(&cfg, "[unet]\nchannels = 3\n").unwrap();
    let (ok, t) = daed(&["train", "--config", cfg.to_str().unwrap()]);
    assert!(!ok && t.contains("channels"), "{t}");
}

#[test]
fn train_resume_sample_and_analyze_end_to_end() {
    let d = tmp("e2e");
    let text = tiny_demo_config().replace(
        "checkpoint_every = 200",
        "checkpoint_every = 200\ndynamics_every = 1\ndynamics_points = 4",
    );
    let run = train_config(&d, &text);
    let cfg = d.join("c.toml");
    // A second plain start refuses to overwrite; --resume latest continues.
    let (ok, t) = train(&cfg, &run, &[]);
    assert!(!ok && t.contains("--resume"), "{t}");
    let (ok, t) = train(&cfg, &run, &["--steps", "3", "--resume", "latest"]);
    assert!(ok && t.contains("starting at step 2"), "{t}");
    let (ok, t) = daed(&[
        "sample",
        "--checkpoint",
        run.to_str().unwrap(),
        "--n",
        "3",
        "--steps",
        "4",
        "--ddim",
        "--out",
        d.to_str().unwrap(),
    ]);
    assert!(ok, "{t}");
    let (ok, t) = daed(&[
        "analyze",
        "dynamics",
        run.to_str().unwrap(),
        "--out",
        d.join("dyn").to_str().unwrap(),
    ]);
    assert!(ok, "{t}");
    let csv = std::fs::read_to_string(d.join("dyn/dynamics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 3 * 4, "{csv}");
    let npz = daed_io::npz::read_npz(d.join("n3_ddim4_seed0.npz")).unwrap();
    assert_eq!(npz["arr_0"].shape, vec![3, 28, 28, 1]);
    let (ok, t) = daed(&[
        "analyze",
        "recon",
        "--checkpoint",
        run.to_str().unwrap(),
        "--dataset",
        "demo",
        "--eval-dataset",
        "cifar10",
        "--split",
        "train",
        "--n",
        "2",
        "--points",
        "2",
        "--until",
        "0.01",
        "--out",
        d.join("recon").to_str().unwrap(),
    ]);
    assert!(
        ok && t.contains("3 -> 1 channels") && t.contains("resized 32x32 -> 28x28"),
        "{t}"
    );
    let csv = std::fs::read_to_string(d.join("recon/recon.csv")).unwrap();
    assert!(csv.contains("cifar10") && csv.contains("demo"), "{csv}");
}

#[test]
fn daed_two_stage_sample_and_transfer_end_to_end() {
    let d = tmp("daed");
    std::fs::write(d.join("ddgm.toml"), tiny_demo_config()).unwrap();
    let ddgm = d.join("ddgm");
    let (ok, t) = train(&d.join("ddgm.toml"), &ddgm, &[]);
    assert!(ok, "{t}");
    let dae_cfg = format!(
        "model = \"daed\"\n{}\n[daed]\nbeta1 = 0.1\nmode = \"two-stage\"\nddgm = \"{}\"\n",
        tiny_demo_config().replace("name = \"demo\"", "name = \"dae\""),
        ddgm.display()
    );
    std::fs::write(d.join("dae.toml"), dae_cfg).unwrap();
    let dae = d.join("dae");
    let (ok, t) = train(&d.join("dae.toml"), &dae, &[]);
    assert!(ok && t.contains("daed with"), "{t}");
    let (ok, t) = daed(&[
        "sample",
        "--checkpoint",
        dae.to_str().unwrap(),
        "--n",
        "2",
        "--steps",
        "3",
        "--out",
        d.to_str().unwrap(),
    ]);
    assert!(ok, "{t}");
    let (ok, t) = daed(&[
        "analyze",
        "transfer",
        "--ddgm",
        ddgm.to_str().unwrap(),
        "--dae",
        dae.to_str().unwrap(),
        "--target",
        "mnist",
        "--n",
        "3",
        "--out",
        d.join("tr").to_str().unwrap(),
    ]);
    assert!(ok && t.contains("| DAED |"), "{t}");
    let (ok, t) = daed(&[
        "analyze",
        "transfer",
        "--ddgm",
        ddgm.to_str().unwrap(),
        "--dae",
        dae.to_str().unwrap(),
        "--beta1",
        "0.2",
        "--target",
        "mnist",
        "--out",
        d.join("tr").to_str().unwrap(),
    ]);
    assert!(!ok && t.contains("beta1"), "{t}");
    // Figure 4/5 sweep on the tiny DDGM: one DAE, four samples each, FID against four images.
    let sw = d.join("sw");
    let (ok, t) = daed(&[
        "analyze",
        "switch",
        "--ddgm",
        ddgm.to_str().unwrap(),
        "--beta1",
        "0.1",
        "--dae-steps",
        "2",
        "--n",
        "4",
        "--reference-n",
        "4",
        "--sample-steps",
        "3",
        "--out",
        sw.to_str().unwrap(),
    ]);
    assert!(ok, "{t}");
    let csv = std::fs::read_to_string(sw.join("switch.csv")).unwrap();
    assert!(
        csv.starts_with("beta1,k,log_snr,fid,precision,recall") && csv.lines().count() == 3,
        "{csv}"
    );
    assert!(
        sw.join("switch_grids.png").is_file()
            && sw.join("dae_beta1_0.1/checkpoints/latest").is_file()
    );
    let (ok, t) = daed(&[
        "daed",
        "switch-table",
        "--steps",
        "500",
        "--beta-start",
        "1e-3",
        "--beta1",
        "0.025",
    ]);
    assert!(
        ok && t.contains("| 0.025 | 11  |") && t.contains("489"),
        "{t}"
    );
}

#[test]
fn bench_times_a_tiny_case_and_writes_json() {
    let d = tmp("bench");
    let out = d.join("b");
    let (ok, t) = daed(&[
        "bench",
        "--models",
        "tiny",
        "--cases",
        "train,sample",
        "--batch",
        "2",
        "--warmup",
        "0",
        "--runs",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{t}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("bench.json")).unwrap()).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for (r, kind) in rows.iter().zip(["train", "sample"]) {
        assert_eq!(r["kind"], kind);
        // configs/tiny.toml's U-Net; bench/bench_torch.py prints the same count.
        assert_eq!(r["params"], 1_191_233);
        assert_eq!(r["times_s"].as_array().unwrap().len(), 2);
        assert!(r["median_s"].as_f64().unwrap() > 0.0);
    }
    assert!(std::fs::read_to_string(out.join("bench.md"))
        .unwrap()
        .contains("| tiny"));
    let (ok, t) = daed(&["bench", "--cases", "warp"]);
    assert!(!ok && t.contains("--cases") && t.contains("warp"), "{t}");
    let (ok, t) = daed(&["bench", "--models", "huge"]);
    assert!(!ok && t.contains("--models") && t.contains("huge"), "{t}");
}

#[test]
fn eval_curve_scores_each_checkpoint_reusing_samples_and_refusing_bad_input() {
    let d = tmp("curve");
    let text = tiny_demo_config()
        .replace("steps = 2", "steps = 4")
        .replace("log_every = 50", "log_every = 1")
        .replace("checkpoint_every = 200", "checkpoint_every = 2");
    let run = train_config(&d, &text);
    let ck2 = run.join("checkpoints/step_00000002");
    // `daed sample` names its file as the curve does: the curve reuses it at step 2.
    let (ok, t) = daed(&[
        "sample",
        "--checkpoint",
        ck2.to_str().unwrap(),
        "--n",
        "6",
        "--steps",
        "3",
        "--ddim",
    ]);
    assert!(ok, "{t}");
    let drawn = std::fs::read(ck2.join("samples/n6_ddim3_seed0.npz")).unwrap();
    let out = d.join("quality");
    let curve = |extra: &[&str]| {
        let mut args = vec![
            "eval",
            "curve",
            "--run",
            run.to_str().unwrap(),
            "--steps",
            "3",
            "--ddim",
            "--sample-batch",
            "4",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        daed(&args)
    };
    // Bad input: named, before any sampling or output.
    let (ok, t) = curve(&["--reference", "demo"]);
    assert!(!ok && t.contains("--n is required"), "{t}");
    let (ok, t) = curve(&["--reference", "demo", "--n", "6", "--checkpoints", "3"]);
    assert!(
        !ok && t.contains("no complete checkpoint at step 3") && t.contains("2, 4"),
        "{t}"
    );
    let (ok, t) = curve(&["--reference", "demo", "--n", "1"]);
    assert!(!ok && t.contains("--n of at least 2"), "{t}");
    let (ok, t) = curve(&[
        "--reference",
        "demo",
        "--n",
        "6",
        "--extrapolate-to",
        "8,-1",
    ]);
    assert!(!ok && t.contains("--extrapolate-to -1"), "{t}");
    assert!(!out.exists() && !run.join("checkpoints/step_00000004/samples").exists());

    let (ok, t) = curve(&["--reference", "demo", "--n", "6"]);
    assert!(ok && t.contains("step 2: samples from"), "{t}");
    assert_eq!(
        std::fs::read(ck2.join("samples/n6_ddim3_seed0.npz")).unwrap(),
        drawn
    );
    let ck4 = run.join("checkpoints/step_00000004/samples/n6_ddim3_seed0.npz");
    let npz = daed_io::npz::read_npz(&ck4).unwrap();
    assert_eq!(npz["arr_0"].shape, vec![6, 28, 28, 1]);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("n6_ddim3_seed0.json")).unwrap())
            .unwrap();
    let pts = json["points"].as_array().unwrap();
    assert_eq!(pts.len(), 2, "{json}");
    let (t2, t4) = (
        pts[0]["train_s"].as_f64().unwrap(),
        pts[1]["train_s"].as_f64().unwrap(),
    );
    assert!(t2 > 0.0 && t4 > t2, "{json}");
    assert!(
        pts.iter().all(|p| p["fid"].as_f64().unwrap().is_finite()),
        "{json}"
    );
    assert_eq!(pts[0]["sample_s"].as_f64(), Some(0.0));
    assert!(pts[1]["sample_s"].as_f64().unwrap() > 0.0);
    let csv = std::fs::read_to_string(out.join("n6_ddim3_seed0.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(out.join("n6_ddim3_seed0.png").is_file() && out.join("n6_ddim3_seed0.md").is_file());

    // Step 4 again: its samples are reused, the FID is the same bits and step 2 stays; the
    // extrapolation asked for is the fit's (when both points are in its later half).
    let (ok, t) = curve(&[
        "--reference",
        "demo",
        "--n",
        "6",
        "--checkpoints",
        "4",
        "--extrapolate-to",
        "8",
    ]);
    assert!(ok && t.contains("step 4: samples from"), "{t}");
    let read = |name: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(out.join(name)).unwrap()).unwrap()
    };
    let again = read("n6_ddim3_seed0.json");
    assert_eq!(again["points"], json["points"]);
    let extrapolated = again["extrapolated"].as_array().unwrap();
    assert_eq!(extrapolated.len(), usize::from(t2 >= 0.5 * t4), "{again}");
    if let Some(e) = extrapolated.first() {
        assert_eq!(e["hours"].as_f64(), Some(8.0));
        let md = std::fs::read_to_string(out.join("n6_ddim3_seed0.md")).unwrap();
        assert!(md.contains("extrapolated, not measured"), "{md}");
    }
    // A curve against another reference is not overwritten.
    let (ok, t) = curve(&["--reference", "mnist", "--n", "6", "--checkpoints", "4"]);
    assert!(
        !ok && t.contains("holds the curve of") && t.contains("against `demo"),
        "{t}"
    );
    // The raw weights get their own samples and curve.
    let (ok, t) = curve(&[
        "--reference",
        "demo",
        "--n",
        "6",
        "--checkpoints",
        "4",
        "--no-ema",
    ]);
    assert!(ok, "{t}");
    assert!(ck4.with_file_name("n6_ddim3_seed0_raw.npz").is_file());
    let raw = read("n6_ddim3_seed0_raw.json");
    assert_eq!(raw["points"].as_array().unwrap().len(), 1, "{raw}");
    assert_ne!(raw["points"][0]["fid"], pts[1]["fid"]);
    assert_eq!(read("n6_ddim3_seed0.json")["points"], json["points"]);

    // The two curves in one table and plot: the EMA's 2 rows (and its extrapolated one, if any),
    // then the raw curve's 1, in the order given.
    let path = |name: &str| out.join(name).to_str().unwrap().to_string();
    let cmp = d.join("cmp/ttq");
    let (ok, t) = daed(&[
        "eval",
        "compare",
        "--curve",
        &path("n6_ddim3_seed0.json"),
        "--label",
        "ema",
        "--curve",
        &path("n6_ddim3_seed0_raw.json"),
        "--label",
        "raw",
        "--out",
        cmp.to_str().unwrap(),
    ]);
    assert!(ok, "{t}");
    let csv = std::fs::read_to_string(cmp.with_extension("csv")).unwrap();
    let firsts: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| &l[..l.find(',').unwrap()])
        .collect();
    let emas = 2 + extrapolated.len();
    assert_eq!(firsts.len(), emas + 1, "{csv}");
    assert!(
        firsts[..emas].iter().all(|&l| l == "ema") && firsts[emas] == "raw",
        "{csv}"
    );
    assert!(cmp.with_extension("png").is_file() && cmp.with_extension("md").is_file());
    // A label short: refused before anything is written.
    let (ok, t) = daed(&[
        "eval",
        "compare",
        "--curve",
        &path("n6_ddim3_seed0.json"),
        "--curve",
        &path("n6_ddim3_seed0_raw.json"),
        "--label",
        "ema",
        "--out",
        d.join("cmp2/x").to_str().unwrap(),
    ]);
    assert!(!ok && t.contains("1 labels for 2 curves"), "{t}");
    assert!(!d.join("cmp2").exists());
}

/// Ctrl-C (SIGINT) or SIGTERM in the middle of training: the step in progress finishes, a
/// checkpoint is written at it, its log window is written, the exit status is 130, and
/// `--resume latest` carries on from that step.
#[cfg(unix)]
#[test]
fn a_signal_stops_training_with_a_checkpoint_at_the_last_step() {
    for sig in ["-INT", "-TERM"] {
        let d = tmp(&format!("signal{sig}"));
        let text = tiny_demo_config()
            .replace("steps = 2", "steps = 100000")
            .replace("log_every = 50", "log_every = 1000")
            .replace("checkpoint_every = 200", "checkpoint_every = 1000");
        let cfg = d.join("c.toml");
        std::fs::write(&cfg, text).unwrap();
        let run = d.join("run");
        let shared = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data");
        let child = Command::new(env!("CARGO_BIN_EXE_daed"))
            .env("DAED_DATA", shared)
            .args(["train", "--config", cfg.to_str().unwrap(), "--out"])
            .arg(&run)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until training has started (the run's config is written first).
        let started = std::time::Instant::now();
        while !run.join("config.toml").exists() {
            assert!(started.elapsed().as_secs() < 120, "training did not start");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let killed = Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(130), "{sig}: {err}");
        assert!(err.contains("stopped by a signal after step"), "{err}");
        let latest = std::fs::read_to_string(run.join("checkpoints/latest")).unwrap();
        let step: u64 = latest.trim().trim_start_matches("step_").parse().unwrap();
        assert!((1..1000).contains(&step), "{latest}");
        let log = std::fs::read_to_string(run.join("log.jsonl")).unwrap();
        let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
        assert_eq!(last["step"].as_u64(), Some(step), "{log}");
        let to = (step + 1).to_string();
        let (ok, t) = train(&cfg, &run, &["--resume", "latest", "--steps", &to]);
        assert!(ok && t.contains(&format!("starting at step {step}")), "{t}");
    }
}
