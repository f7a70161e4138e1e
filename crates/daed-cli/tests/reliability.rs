//! Reliability as a user meets it: nothing lost, no panics on bad input, the same bits every run
//! (at any thread count), and kill -9 + resume equal to the uninterrupted run.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn cmd(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_daed"));
    c.env(
        "DAED_DATA",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data"),
    )
    .env_remove("RAYON_NUM_THREADS")
    .args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn daed_env(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = cmd(args, env).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn daed(args: &[&str]) -> (bool, String) {
    daed_env(args, &[])
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("daed-rel-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The demo preset at test size, with dropout on (the attention at 7 px is on already).
fn config(steps: u64, every: u64, extra_train: &str) -> String {
    include_str!("../../../configs/demo.toml")
        .replace("steps = 600", &format!("steps = {steps}"))
        .replace(
            "checkpoint_every = 200",
            &format!("checkpoint_every = {every}\n{extra_train}"),
        )
        .replace("log_every = 50", "log_every = 1")
        .replace("batch_size = 32", "batch_size = 12")
        .replace("model_channels = 16", "model_channels = 8")
        .replace("num_heads = 2", "num_heads = 1")
        .replace("dropout = 0.0", "dropout = 0.1")
        .replace("respacing = \"100\"", "respacing = \"4\"")
        .replace("n = 64", "n = 4")
}

fn write_config(dir: &Path, text: &str) -> String {
    let p = dir.join("cfg.toml");
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn train(cfg: &str, out: &Path, extra: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut args = vec!["train", "--config", cfg, "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    daed_env(&args, env)
}

fn newest(run: &Path) -> PathBuf {
    let root = run.join("checkpoints");
    let name = std::fs::read_to_string(root.join("latest")).unwrap();
    root.join(name.trim())
}

fn weights(run: &Path) -> Vec<u8> {
    let c = newest(run);
    [
        std::fs::read(c.join("model.safetensors")).unwrap(),
        std::fs::read(c.join("ema.safetensors")).unwrap(),
        std::fs::read(c.join("optimizer.safetensors")).unwrap(),
    ]
    .concat()
}

/// Whether every line of the run's log has a step past the one before.
fn log_steps(run: &Path) -> Vec<u64> {
    std::fs::read_to_string(run.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

/// Leftovers of killed writes: names with `.tmp-` anywhere in the run.
fn leftovers(dir: &Path) -> (usize, u64) {
    let mut found = (0, 0);
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.file_name().unwrap().to_string_lossy().contains(".tmp-") {
            found.0 += 1;
            found.1 += daed_io::atomic::disk_usage(&p);
        } else if p.is_dir() {
            let (n, b) = leftovers(&p);
            found = (found.0 + n, found.1 + b);
        }
    }
    found
}

#[test]
fn same_seed_same_bits_at_any_thread_count() {
    let dir = tmp("threads");
    let cfg = write_config(&dir, &config(6, 6, ""));
    let mut runs = Vec::new();
    for (i, threads) in ["", "", "1", "3"].iter().enumerate() {
        let out = dir.join(format!("run{i}"));
        let env: Vec<(&str, &str)> = if threads.is_empty() {
            vec![]
        } else {
            vec![("RAYON_NUM_THREADS", threads)]
        };
        let (ok, t) = train(&cfg, &out, &[], &env);
        assert!(ok, "{t}");
        runs.push((threads.to_string(), weights(&out), log_steps(&out)));
    }
    let losses = |i: usize| std::fs::read_to_string(dir.join(format!("run{i}/log.jsonl"))).unwrap();
    for (i, (threads, w, _)) in runs.iter().enumerate().skip(1) {
        assert!(
            *w == runs[0].1,
            "run {i} (threads `{threads}`) differs from run 0 (default threads)"
        );
        let strip = |s: String| -> Vec<String> {
            s.lines()
                .map(|l| {
                    let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                    for k in ["steps_per_sec", "elapsed_s"] {
                        v.as_object_mut().unwrap().remove(k);
                    }
                    v.to_string()
                })
                .collect()
        };
        assert_eq!(strip(losses(i)), strip(losses(0)), "losses of run {i}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Kills a training run at seeded random moments, resumes each time, and checks that the end is
/// the uninterrupted run's bits, that no checkpoint is torn, nothing is left behind, and the log
/// has each step once. DAED_FAULT_STEPS (default 60) makes the run longer.
#[test]
fn kill_and_resume_equals_the_uninterrupted_run() {
    let dir = tmp("kill");
    let steps = std::env::var("DAED_FAULT_STEPS").map_or(60, |v| v.parse().expect("steps"));
    let cfg = write_config(&dir, &config(steps, 3, "keep_checkpoints = 3"));
    let reference = dir.join("reference");
    let (ok, t) = train(&cfg, &reference, &[], &[]);
    assert!(ok, "{t}");
    let run = dir.join("killed");
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let (mut kills, mut resumes, mut rounds) = (0, 0, 0);
    // Leftovers of killed writes seen right after the kills (cleaned by the next run).
    let (mut left_max, mut left_bytes) = (0, 0u64);
    let budget = Instant::now();
    // Longer runs: DAED_FAULT_KILLS (default 12) and DAED_FAULT_SECS (default 150).
    let env = |k: &str, d: u64| std::env::var(k).map_or(d, |v| v.parse().expect(k));
    let max_kills = env("DAED_FAULT_KILLS", 12);
    let max_time = Duration::from_secs(env("DAED_FAULT_SECS", 150));
    loop {
        rounds += 1;
        let resume = std::fs::read_dir(run.join("checkpoints")).is_ok_and(|rd| {
            rd.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("step_"))
        });
        let mut args = vec!["train", "--config", &cfg, "--out", run.to_str().unwrap()];
        if resume {
            args.extend(["--resume", "latest"]);
            resumes += 1;
        }
        let mut child = cmd(&args, &[])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let wait = Duration::from_millis(150 + rng % 1200);
        let deadline = Instant::now() + wait;
        let mut finished = None;
        while Instant::now() < deadline {
            if let Some(s) = child.try_wait().unwrap() {
                finished = Some(s);
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if kills >= max_kills || budget.elapsed() > max_time {
            let s = finished.unwrap_or_else(|| child.wait().unwrap());
            assert!(s.success(), "the last round failed");
            break;
        }
        match finished {
            Some(s) => {
                assert!(s.success(), "round {rounds} failed");
                break;
            }
            None => {
                child.kill().unwrap();
                child.wait().unwrap();
                kills += 1;
                let (n, bytes) = leftovers(&run);
                left_max = left_max.max(n);
                left_bytes += bytes;
                // Every checkpoint that is visible is whole.
                let (ok, t) = daed(&["doctor", run.to_str().unwrap()]);
                if run.join("checkpoints").exists() {
                    assert!(
                        !t.contains("damaged"),
                        "a torn checkpoint after kill {kills}: {t}"
                    );
                }
                let _ = ok;
            }
        }
    }
    let before = leftovers(&run);
    println!(
        "fault injection: {rounds} rounds, {kills} kills, {resumes} resumes; right after the \
         kills at most {left_max} leftover(s), {left_bytes} bytes in all; at the end: {} entries, \
         {} bytes",
        before.0, before.1
    );
    assert_eq!(before, (0, 0), "leftovers of killed writes remain");
    assert!(
        weights(&run) == weights(&reference),
        "the trajectory changed"
    );
    let logged = log_steps(&run);
    assert_eq!(logged, (1..=steps).collect::<Vec<_>>(), "log steps");
    let (ok, t) = daed(&["doctor", run.to_str().unwrap()]);
    assert!(ok && t.contains("healthy"), "{t}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn resuming_an_older_checkpoint_never_deletes_newer_ones() {
    let dir = tmp("older");
    let cfg = write_config(&dir, &config(6, 2, "keep_checkpoints = 2"));
    let run = dir.join("run");
    let (ok, t) = train(&cfg, &run, &[], &[]);
    assert!(ok, "{t}");
    let old = run.join("checkpoints/step_00000004");
    let newest_before = newest(&run);
    assert!(old.is_dir() && newest_before.ends_with("step_00000006"));
    let (ok, t) = train(&cfg, &run, &["--resume", old.to_str().unwrap()], &[]);
    assert!(
        !ok && t.contains("step_00000006") && t.contains("--out"),
        "{t}"
    );
    assert!(newest(&run).join("state.json").is_file(), "latest dangles");
    assert!(run.join("checkpoints/step_00000006").is_dir());
    // Branching into a new directory works and leaves the old run alone.
    let branch = dir.join("branch");
    let (ok, t) = train(&cfg, &branch, &["--resume", old.to_str().unwrap()], &[]);
    assert!(ok, "{t}");
    assert!(
        weights(&branch) == weights(&run),
        "same trajectory from step 4"
    );
    assert!(run.join("checkpoints/step_00000006").is_dir());
    // A latest that names a missing checkpoint is an error, not another checkpoint.
    std::fs::write(run.join("checkpoints/latest"), "step_00000099").unwrap();
    let (ok, t) = daed(&["sample", "--checkpoint", run.to_str().unwrap(), "--n", "1"]);
    assert!(!ok && t.contains("step_00000099"), "{t}");
    let (ok, t) = daed(&["doctor", run.to_str().unwrap()]);
    assert!(!ok && t.contains("latest"), "{t}");
    let (ok, t) = daed(&["doctor", run.to_str().unwrap(), "--repair"]);
    assert!(ok && t.contains("healthy after repair"), "{t}");
    assert!(newest(&run).ends_with("step_00000006"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn demo_never_overwrites_a_run() {
    let dir = tmp("demo");
    let cfg = write_config(&dir, &config(2, 2, ""));
    let run = dir.join("run");
    let (ok, t) = train(&cfg, &run, &[], &[]);
    assert!(ok, "{t}");
    let before = weights(&run);
    let config_before = std::fs::read(run.join("config.toml")).unwrap();
    let log_before = std::fs::read(run.join("log.jsonl")).unwrap();
    let (ok, t) = daed(&["demo", "--out", run.to_str().unwrap(), "--steps", "1"]);
    assert!(!ok && t.contains("not empty"), "{t}");
    assert!(weights(&run) == before);
    assert_eq!(
        std::fs::read(run.join("config.toml")).unwrap(),
        config_before
    );
    assert_eq!(std::fs::read(run.join("log.jsonl")).unwrap(), log_before);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn divergence_never_leaves_a_non_finite_checkpoint() {
    let dir = tmp("nan");
    let cfg = config(6, 1, "").replace("lr = 2e-3", "lr = 1e308");
    let cfg = write_config(&dir, &cfg);
    let run = dir.join("run");
    let (ok, t) = train(&cfg, &run, &[], &[]);
    assert!(!ok && t.contains("diverged"), "{t}");
    let (ok, t) = daed(&["doctor", run.to_str().unwrap()]);
    assert!(!t.contains("damaged") && !t.contains("not finite"), "{t}");
    let _ = ok;
    // A checkpoint whose weights were made non-finite (checksum updated) is refused for sampling.
    let good = config(2, 2, "");
    let cfg = write_config(&dir, &good);
    let run = dir.join("good");
    let (ok, t) = train(&cfg, &run, &[], &[]);
    assert!(ok, "{t}");
    let ck = newest(&run);
    let ema = ck.join("ema.safetensors");
    let mut bytes = std::fs::read(&ema).unwrap();
    let n = bytes.len();
    bytes[n - 4..].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&ema, &bytes).unwrap();
    let state_path = ck.join("state.json");
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
    state["checksums"]["ema.safetensors"] = daed_core::train::checkpoint::sha256_hex(&bytes).into();
    std::fs::write(&state_path, state.to_string()).unwrap();
    let (ok, t) = daed(&["sample", "--checkpoint", run.to_str().unwrap(), "--n", "2"]);
    assert!(!ok && t.contains("not finite"), "{t}");
    let (ok, t) = daed(&["doctor", run.to_str().unwrap()]);
    assert!(!ok && t.contains("damaged"), "{t}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_sampling_requests_are_errors_not_panics() {
    let dir = tmp("sample");
    let cfg = write_config(&dir, &config(1, 1, ""));
    let run = dir.join("run");
    let (ok, t) = train(&cfg, &run, &[], &[]);
    assert!(ok, "{t}");
    let r = run.to_str().unwrap();
    for (args, want) in [
        (vec!["--n", "18446744073709551615"], "--n"),
        (vec!["--n", "1000000000000"], "--n"),
        (vec!["--eta", "NaN", "--ddim"], "eta"),
        (vec!["--eta=-1", "--ddim"], "eta"),
        (vec!["--steps", "100000"], "100000"),
    ] {
        let out = dir.join("refused");
        let mut a = vec!["sample", "--checkpoint", r, "--out", out.to_str().unwrap()];
        a.extend(args.iter());
        let (ok, t) = daed(&a);
        assert!(
            !ok && t.contains(want) && !t.contains("panicked"),
            "{args:?}: {t}"
        );
        assert!(
            !out.exists(),
            "{args:?}: a refused request wrote {}",
            out.display()
        );
    }
    let state_path = newest(&run).join("state.json");
    let text = std::fs::read_to_string(&state_path).unwrap();
    for shape in ["[1, 0, 0]", "[1, 100000, 100000]", "[7, 28, 28]"] {
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["image_shape"] = serde_json::from_str(shape).unwrap();
        std::fs::write(&state_path, v.to_string()).unwrap();
        let (ok, t) = daed(&["sample", "--checkpoint", r, "--n", "1"]);
        assert!(
            !ok && t.contains("image_shape") && !t.contains("panicked"),
            "{shape}: {t}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_configs_are_refused_before_any_work() {
    let dir = tmp("config");
    for (from, to, want) in [
        ("batch_size = 12", "batch_size = 100000000", "GiB"),
        ("model_channels = 8", "model_channels = 100000", "unet"),
        (
            "attention_resolutions = [7]",
            "attention_resolutions = [1000000]",
            "attention_resolutions",
        ),
        (
            "respacing = \"4\"",
            "respacing = \"bogus\"",
            "sample.respacing",
        ),
        ("lr = 2e-3", "lr = 2e-3\nweight_decay = nan", "weight_decay"),
        ("lr = 2e-3", "lr = 2e-3\ngrad_clip = nan", "grad_clip"),
        ("respacing = \"4\"", "respacing = \"4\"\neta = nan", "eta"),
    ] {
        let text = config(2, 2, "");
        assert!(text.contains(from), "{from}");
        let cfg = write_config(&dir, &text.replace(from, to));
        let run = dir.join("run");
        let (ok, t) = train(&cfg, &run, &[], &[]);
        assert!(
            !ok && t.contains(want) && !t.contains("panicked"),
            "{to}: {t}"
        );
        assert!(!run.join("checkpoints").exists(), "{to}: work started");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

fn write_images(path: &Path, n: usize, side: usize, channels: usize) {
    write_images_from(path, 0, n, side, channels);
}

/// Images `first..first + n` of one fixed sequence of patterned images.
fn write_images_from(path: &Path, first: usize, n: usize, side: usize, channels: usize) {
    use daed_io::npz::{write_npz, NpyArray, NpyData};
    let per = side * side * channels;
    let px: Vec<u8> = (first * per..(first + n) * per)
        .map(|i| (i * 37 % 251) as u8)
        .collect();
    let a = NpyArray {
        shape: vec![n, side, side, channels],
        data: NpyData::U8(px),
    };
    write_npz(path, &[("arr_0", &a)]).unwrap();
}

#[test]
fn eval_refuses_mismatched_or_unusable_sets_before_any_feature() {
    let dir = tmp("eval");
    let one = dir.join("one.npz");
    let grey = dir.join("grey.npz");
    let colour = dir.join("colour.npz");
    write_images(&one, 1, 28, 1);
    write_images(&grey, 6, 28, 1);
    write_images(&colour, 6, 32, 3);
    let out = dir.join("out");
    let eval = |s: &Path, r: &Path, out: &Path, extra: &[&str]| {
        let mut a = vec![
            "eval",
            "--samples",
            s.to_str().unwrap(),
            "--reference",
            r.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--inception",
            "/no/such/weights.safetensors",
        ];
        a.extend_from_slice(extra);
        daed(&a)
    };
    // Each refusal comes before the Inception weights are even opened.
    let (ok, t) = eval(&one, &grey, &out, &[]);
    assert!(
        !ok && t.contains("at least 2") && !t.contains("weights"),
        "{t}"
    );
    let (ok, t) = eval(&grey, &colour, &out, &[]);
    assert!(
        !ok && t.contains("--allow-resize") && !t.contains("weights"),
        "{t}"
    );
    let (ok, t) = eval(
        &grey,
        &colour,
        &out,
        &["--allow-resize", "--metrics", "fid"],
    );
    assert!(
        !ok && !t.contains("--allow-resize") && t.contains("weights"),
        "{t}"
    );
    assert!(t.contains("resized"), "the note says what was resized: {t}");
    let blocked = dir.join("a-file");
    std::fs::write(&blocked, b"").unwrap();
    let (ok, t) = eval(&grey, &grey, &blocked.join("out"), &[]);
    assert!(!ok && t.contains("a-file") && !t.contains("weights"), "{t}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--samples A --samples B` evaluates A's images then B's as one set: the FID of two shards
/// equals the FID of the file holding both; a file given twice, statistics or another image
/// shape are refused before any feature.
#[test]
fn eval_joins_sample_shards_in_order() {
    let dir = tmp("eval-join");
    let f = |name: &str| dir.join(name).to_str().unwrap().to_string();
    write_images_from(&dir.join("whole.npz"), 0, 6, 28, 1);
    write_images_from(&dir.join("a.npz"), 0, 4, 28, 1);
    write_images_from(&dir.join("b.npz"), 4, 2, 28, 1);
    write_images_from(&dir.join("ref.npz"), 50, 6, 28, 1);
    write_images(&dir.join("colour.npz"), 2, 32, 3);
    let eval_n = |samples: &[String], n: &str, out: &str| {
        let mut a = vec!["eval".to_string(), "--n".into(), n.into()];
        for s in samples {
            a.extend(["--samples".to_string(), s.clone()]);
        }
        a.extend(
            [
                "--reference",
                &f("ref.npz"),
                "--metrics",
                "fid",
                "--no-cache",
                "--out",
                out,
            ]
            .map(String::from),
        );
        daed(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let eval = |samples: &[String], out: &str| eval_n(samples, "6", out);
    let fid = |out: &str| {
        let j: serde_json::Value =
            serde_json::from_slice(&std::fs::read(Path::new(out).join("metrics.json")).unwrap())
                .unwrap();
        j["metrics"]["fid"]["value"].as_f64().unwrap()
    };
    let (ok, t) = eval(&[f("whole.npz")], &f("o1"));
    assert!(ok, "{t}");
    let (ok, t) = eval(&[f("a.npz"), f("b.npz")], &f("o2"));
    assert!(ok && t.contains("6 images from 2 files"), "{t}");
    assert_eq!(fid(&f("o1")), fid(&f("o2")));
    // --n takes the first N of the joined set.
    let (ok, t) = eval_n(&[f("a.npz"), f("b.npz")], "5", &f("o3"));
    assert!(ok && t.contains("5 images from 2 files"), "{t}");
    let (ok, t) = eval_n(&[f("whole.npz")], "5", &f("o4"));
    assert!(ok, "{t}");
    assert_eq!(fid(&f("o3")), fid(&f("o4")));

    for (bad, says) in [
        (vec![f("a.npz"), f("a.npz")], "given twice"),
        (vec![f("a.npz"), f("colour.npz")], "colour.npz"),
    ] {
        let (ok, t) = eval(&bad, &f("bad"));
        assert!(!ok && t.contains(says), "{t}");
        assert!(!dir.join("bad").exists());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// What a write killed mid-way leaves (a temporary checkpoint folder, a temporary `latest`, a
/// temporary log) is reported by the doctor and cleaned by the next run; nothing else is touched.
#[test]
fn leftovers_of_killed_writes_are_found_and_cleaned() {
    let dir = tmp("leftovers");
    let cfg = write_config(&dir, &config(4, 2, ""));
    let run = dir.join("run");
    let (ok, t) = train(&cfg, &run, &[], &[]);
    assert!(ok, "{t}");
    // PIDs above the kernel's maximum (4194304) never run.
    let torn = run.join("checkpoints/.step_00000006.tmp-4194399");
    std::fs::create_dir_all(&torn).unwrap();
    std::fs::write(torn.join("model.safetensors"), vec![7u8; 1000]).unwrap();
    std::fs::write(run.join("checkpoints/latest.tmp-4194399"), "step_0000").unwrap();
    std::fs::write(run.join("log.jsonl.tmp-4194399"), "{").unwrap();
    let (ok, t) = daed(&["doctor", run.to_str().unwrap()]);
    assert!(
        !ok && t.contains("3 leftover(s)") && t.contains("1010 bytes"),
        "{t}"
    );
    assert!(torn.exists(), "the doctor changes nothing unless asked");
    let cfg6 = write_config(&dir, &config(6, 2, ""));
    let (ok, t) = train(&cfg6, &run, &["--resume", "latest"], &[]);
    assert!(ok, "{t}");
    assert_eq!(leftovers(&run), (0, 0));
    assert!(run.join("checkpoints/step_00000006/state.json").is_file());
    let (ok, t) = daed(&["doctor", run.to_str().unwrap()]);
    assert!(ok && t.contains("healthy"), "{t}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// While a run trains, its directory is locked: `daed doctor --repair` (and a second trainer)
/// is refused instead of changing files under it.
#[test]
fn a_training_run_locks_its_directory() {
    let dir = tmp("lock");
    let cfg = write_config(&dir, &config(100_000, 50_000, ""));
    let run = dir.join("run");
    let mut child = cmd(
        &["train", "--config", &cfg, "--out", run.to_str().unwrap()],
        &[],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    // Wait for the first log line: the lock is taken before it.
    let start = Instant::now();
    while !run.join("log.jsonl").is_file() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::create_dir_all(run.join("checkpoints")).unwrap();
    std::fs::write(run.join("checkpoints/latest.tmp-4194399"), "x").unwrap();
    let (ok, t) = daed(&["doctor", run.to_str().unwrap(), "--repair"]);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!ok && t.contains("another daed process"), "{t}");
    assert!(run.join("checkpoints/latest.tmp-4194399").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn devices_flag_trains_data_parallel_with_one_devices_bits() {
    let dir = tmp("devices");
    let split = write_config(&dir, &config(4, 4, "micro_batch = 6"));
    let (ok, t) = train(&split, &dir.join("one"), &[], &[]);
    assert!(ok, "{t}");
    let whole = dir.join("whole.toml");
    std::fs::write(&whole, config(4, 4, "")).unwrap();
    let whole = whole.display().to_string();
    let (ok, t) = train(&whole, &dir.join("two"), &["--devices", "flex,flex"], &[]);
    assert!(ok, "{t}");
    assert!(weights(&dir.join("two")) == weights(&dir.join("one")));
    let saved = std::fs::read_to_string(dir.join("two/config.toml")).unwrap();
    let flat: String = saved.split_whitespace().collect();
    assert!(flat.contains("devices=[\"flex\",\"flex\",]"), "{saved}");

    let (ok, t) = train(&whole, &dir.join("bad"), &["--devices", "flex,tpu"], &[]);
    assert!(
        !ok && t.contains("train.devices") && t.contains("`tpu`"),
        "{t}"
    );
    assert!(!t.contains("panicked"), "{t}");
    let many = vec!["flex"; 13].join(",");
    let (ok, t) = train(&whole, &dir.join("many"), &["--devices", &many], &[]);
    assert!(!ok && t.contains("train.devices: 13 devices"), "{t}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Final logged loss of a run.
fn last_loss(run: &Path) -> f64 {
    let log = std::fs::read_to_string(run.join("log.jsonl")).unwrap();
    let last = log.lines().last().unwrap();
    serde_json::from_str::<serde_json::Value>(last).unwrap()["loss"]
        .as_f64()
        .unwrap()
}

/// `--precision bf16`: refused with a clear error where the CPU lacks AVX512-BF16 (simulated
/// with DAED_BF16=off on every machine); where it has it, a bf16 run is the same bits at any
/// thread count, differs from f32 (bf16 really ran) by little, and its samples are kept apart.
#[test]
fn bf16_precision_is_refused_where_absent_and_reproducible_where_present() {
    let dir = tmp("bf16");
    let cfg = write_config(&dir, &config(4, 4, ""));
    let off = [("DAED_BF16", "off")];
    let (ok, t) = train(&cfg, &dir.join("off"), &["--precision", "bf16"], &off);
    assert!(
        !ok && t.contains("train.precision") && t.contains("AVX512-BF16"),
        "{t}"
    );
    assert!(
        !t.contains("panicked") && !dir.join("off/checkpoints").exists(),
        "{t}"
    );
    let (ok, t) = train(&cfg, &dir.join("fp8"), &["--precision", "fp8"], &[]);
    assert!(!ok && t.contains("fp8") && t.contains("bf16"), "{t}");

    let (ok, t) = train(&cfg, &dir.join("bf16"), &["--precision", "bf16"], &[]);
    if !ok && t.contains("AVX512-BF16") {
        eprintln!("skipped the bf16 runs: this CPU has no AVX512-BF16");
        return std::fs::remove_dir_all(&dir).unwrap();
    }
    assert!(ok, "{t}");
    let one = [("RAYON_NUM_THREADS", "1")];
    let (ok, t) = train(&cfg, &dir.join("bf16-1"), &["--precision", "bf16"], &one);
    assert!(ok, "{t}");
    let (ok, t) = train(&cfg, &dir.join("f32"), &[], &[]);
    assert!(ok, "{t}");
    assert!(weights(&dir.join("bf16")) == weights(&dir.join("bf16-1")));
    assert!(weights(&dir.join("bf16")) != weights(&dir.join("f32")));
    let (b, f) = (last_loss(&dir.join("bf16")), last_loss(&dir.join("f32")));
    assert!((b - f).abs() <= 0.02 * f, "loss bf16 {b} vs f32 {f}");

    let run = dir.join("bf16").display().to_string();
    for p in ["bf16", "f32"] {
        let (ok, t) = daed(&[
            "sample",
            "--checkpoint",
            &run,
            "--n",
            "2",
            "--steps",
            "3",
            "--precision",
            p,
        ]);
        assert!(ok, "{t}");
    }
    let samples = newest(&dir.join("bf16")).join("samples");
    // Both kept: a bf16 sampling writes its own files (the uint8 pixels of a 4-step model are
    // saturated, so their values may agree; the kernels' tests check that bf16 runs).
    for name in ["n2_ancestral3_seed0_bf16.npz", "n2_ancestral3_seed0.npz"] {
        assert!(samples.join(name).is_file(), "{name}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `daed sample` killed part-way keeps its finished batches; the same command then continues and
/// writes the file an uninterrupted run writes, byte for byte, reports the sampling time of both
/// runs, and removes the kept batches.
#[test]
fn killed_sampling_continues_with_the_bits_of_an_uninterrupted_run() {
    let dir = tmp("sample-kill");
    let cfg = write_config(&dir, &config(2, 2, ""));
    let run = dir.join("run");
    let (ok, t) = train(&cfg, &run, &[], &[]);
    assert!(ok, "{t}");
    let sample = |out: &Path| {
        let run = run.to_str().unwrap();
        let out = out.to_str().unwrap();
        let args = [
            "sample",
            "--checkpoint",
            run,
            "--n",
            "8",
            "--batch-size",
            "1",
        ];
        let mut c = cmd(&args, &[]);
        c.args(["--steps", "300", "--out", out]);
        c
    };
    let whole = dir.join("whole");
    let out = sample(&whole).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tag = "n8_ancestral300_seed0";

    let cut = dir.join("cut");
    let mut child = sample(&cut)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let parts = cut.join(format!("{tag}.parts"));
    let started = Instant::now();
    while !parts.join("batch_000001.f32").exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "sampling ended before it was killed"
        );
        assert!(started.elapsed().as_secs() < 120, "no batch was kept");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!cut.join(format!("{tag}.npz")).exists(), "killed too late");

    let again = sample(&cut).output().unwrap();
    let t = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success() && t.contains("continuing: "), "{t}");
    // The time reported counts the killed run's batches too.
    assert!(t.contains("s of them in earlier runs"), "{t}");
    let npz = |d: &Path| std::fs::read(d.join(format!("{tag}.npz"))).unwrap();
    assert!(
        npz(&cut) == npz(&whole),
        "the continued run drew other images"
    );
    assert!(!parts.exists(), "the kept batches remain");
    std::fs::remove_dir_all(&dir).unwrap();
}
