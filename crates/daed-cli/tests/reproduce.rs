//! `daed reproduce --scale micro` as CI runs it: interrupted in the DDGM's training and
//! continued, every section of the report present with figures and tables, a rerun reusing every
//! stage, and a changed input redoing only the stages that depend on it.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SHARED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data");

fn daed() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_daed"));
    c.env("DAED_DATA", SHARED).env_remove("RAYON_NUM_THREADS");
    c
}

fn run(args: &[&str]) -> String {
    let out = daed().args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "daed {args:?} failed:\n{text}");
    text
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("daed-repro-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Starts the study and kills it once the DDGM has written its first checkpoint.
fn start_and_kill(out: &Path) {
    let mut child = daed()
        .args([
            "reproduce",
            "--scale",
            "micro",
            "--out",
            out.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let latest = out.join("ddgm/checkpoints/latest");
    let t0 = Instant::now();
    while !latest.exists() && t0.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(latest.exists(), "the DDGM never wrote a checkpoint");
    assert!(
        !out.join("report.html").exists(),
        "killed too late: the study had finished"
    );
}

fn records(out: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(out.join("results.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn check_report(out: &Path, with_metrics: bool) {
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    for heading in [
        "Figures 1 and 7",
        "The DDGM",
        "Figures 2 and 3",
        "Figures 13 and 14",
        "DAED: the switch step",
        "Figures 4 and 5",
        "Table 2",
        "The suggested switch point",
        "Reading: agreement with the paper",
        "Provenance",
    ] {
        assert!(
            html.contains(&format!("<h2>{heading}")),
            "report.html lacks the section {heading}"
        );
    }
    assert!(
        !html.contains("src=\"http"),
        "the report must be self-contained"
    );
    // Every figure is embedded, and none is empty.
    let images: Vec<&str> = html.split("data:image/png;base64,").skip(1).collect();
    let want = if with_metrics { 7 } else { 5 };
    assert!(
        images.len() >= want,
        "{} figures, want {want}",
        images.len()
    );
    for img in &images {
        let len = img.find('"').unwrap();
        assert!(len > 2000, "a figure of {len} base64 bytes");
    }
    // Tables have rows with numbers.
    assert!(html.matches("<tr><td>").count() >= 15, "too few table rows");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("## Table 2") && md.contains("paper FID") == with_metrics);
    let recs = records(out);
    assert_eq!(recs.len(), 9);
    for r in &recs {
        let skipped = !r["skipped"].is_null();
        assert!(!skipped || (!with_metrics && r["stage"] == "sweep"), "{r}");
        assert!(r["provenance"]["commit"]
            .as_str()
            .is_some_and(|c| !c.is_empty()));
    }
    let sweep = recs.iter().find(|r| r["stage"] == "sweep").unwrap();
    if with_metrics {
        let rows = sweep["summary"]["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 3, "the DDGM and two DAEDs");
        assert!(rows
            .iter()
            .all(|r| r["fid"].as_f64().is_some_and(f64::is_finite)));
    }
    let suggest = recs.iter().find(|r| r["stage"] == "suggest").unwrap();
    assert!(suggest["summary"]["beta1"].as_f64().is_some());
}

/// Renders the report in headless Chromium when it is installed (Debian's `chromium`): the page
/// must load and paint (a screenshot of several hundred KB: text, tables and figures).
fn screenshot_when_chromium_is_here(out: &Path) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/report_screenshot.sh"
    );
    let shot = out.join("report-screenshot.png");
    let r = Command::new("sh")
        .args([
            script,
            out.to_str().unwrap(),
            shot.to_str().unwrap(),
            "1200",
            "6000",
        ])
        .output()
        .unwrap();
    if r.status.code() == Some(2) {
        eprintln!(
            "no Chromium here: the browser check is skipped ({})",
            String::from_utf8_lossy(&r.stderr).trim()
        );
        return;
    }
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    assert!(
        png.len() > 200_000,
        "a screenshot of {} bytes: the page did not paint",
        png.len()
    );
    let _ = std::fs::remove_file(shot);
}

fn stage_files(out: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(out)
        .unwrap()
        .filter_map(|e| {
            let p = e.ok()?.path().join("stage.json");
            Some((p.display().to_string(), std::fs::read(&p).ok()?))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn micro_study_continues_reports_and_reuses() {
    let out = tmp("micro");
    let o = out.to_str().unwrap();
    start_and_kill(&out);
    let text = run(&["reproduce", "--scale", "micro", "--out", o]);
    assert!(
        text.contains("ddgm: done") && text.contains("9 stages"),
        "{text}"
    );
    let with_metrics = Path::new(SHARED).join("inception").exists();
    check_report(&out, with_metrics);
    // The DDGM went on from its checkpoint: its log has each step once.
    let log = std::fs::read_to_string(out.join("ddgm/log.jsonl")).unwrap();
    let steps: Vec<u64> = log
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert!(steps.windows(2).all(|w| w[0] < w[1]), "log steps {steps:?}");

    screenshot_when_chromium_is_here(&out);

    // `daed daed suggest` applies the same rule to a DDGM run and a sweep's summary.
    let ddgm = out.join("ddgm");
    let mut args = vec![
        "daed",
        "suggest",
        "--ddgm",
        ddgm.to_str().unwrap(),
        "--n",
        "8",
    ];
    let sweep = out.join("sweep/summary.json");
    if with_metrics {
        args.extend(["--sweep", sweep.to_str().unwrap(), "--beta1", "0.025,0.1"]);
    }
    let text = run(&args);
    assert!(text.contains("suggested beta1 = "), "{text}");
    assert!(text.contains("MS-SSIM >= 0.9"), "{text}");

    // A rerun reuses every stage and changes no record.
    let before = stage_files(&out);
    let text = run(&["reproduce", "--scale", "micro", "--out", o]);
    assert!(text.contains("9 stages, 9 reused"), "{text}");
    assert_eq!(before, stage_files(&out));

    // A changed reconstruction grid redoes the reconstruction and what reads it, nothing else.
    let plan = run(&["reproduce", "--scale", "micro", "--print-plan"]);
    assert!(plan.contains("\npoints = 3"), "{plan}");
    let plan_file = out.with_extension("toml");
    std::fs::write(&plan_file, plan.replace("\npoints = 3", "\npoints = 2")).unwrap();
    let text = run(&[
        "reproduce",
        "--plan",
        plan_file.to_str().unwrap(),
        "--out",
        o,
    ]);
    assert!(text.contains("9 stages, 7 reused"), "{text}");
    assert!(
        text.contains("recon: done") && text.contains("suggest: done"),
        "{text}"
    );
    let _ = std::fs::remove_file(plan_file);

    // The same DDGM given with --ddgm: the same bits in every analysis that reads it.
    let given = tmp("given");
    let g = given.to_str().unwrap();
    let ddgm = out.join("ddgm");
    let text = run(&[
        "reproduce",
        "--scale",
        "micro",
        "--ddgm",
        ddgm.to_str().unwrap(),
        "--out",
        g,
    ]);
    assert!(text.contains("9 stages, 0 reused"), "{text}");
    for f in [
        "losses/losses.csv",
        "transfer/transfer.csv",
        "sweep/switch.csv",
    ] {
        let (a, b) = (std::fs::read(out.join(f)), std::fs::read(given.join(f)));
        assert!(a.is_ok() || !with_metrics, "{f}");
        assert_eq!(
            a.ok(),
            b.ok(),
            "{f} differs between the trained and the given DDGM"
        );
    }
    let _ = std::fs::remove_dir_all(&given);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn bad_plans_and_inputs_are_refused_before_any_work() {
    let out = tmp("bad");
    let o = out.to_str().unwrap();
    let plan = run(&["reproduce", "--scale", "micro", "--print-plan"]);
    for (from, to, want) in [
        (
            "transfer_beta1 = 0.1",
            "transfer_beta1 = 0.5",
            "transfer_beta1",
        ),
        ("beta1 = [0.025, 0.1]", "beta1 = [0.025, 1.5]", "beta1"),
        ("\npoints = 3", "\npoints = 0", "recon.points"),
        ("mnist:test", "mnist:valid", "split"),
        ("\nsteps = 20", "\nstepz = 20", "stepz"),
    ] {
        let file = std::env::temp_dir().join(format!("daed-bad-plan-{}.toml", std::process::id()));
        std::fs::write(&file, plan.replacen(from, to, 1)).unwrap();
        let r = daed()
            .args(["reproduce", "--plan", file.to_str().unwrap(), "--out", o])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&r.stderr).to_string();
        assert!(!r.status.success() && err.contains(want), "{to}: {err}");
        assert!(!out.exists(), "{to}: wrote {o} before refusing");
        let _ = std::fs::remove_file(file);
    }
    for args in [
        vec!["reproduce", "--scale", "huge", "--out", o],
        vec!["reproduce", "--dataset", "imagenet9", "--out", o],
        vec!["reproduce", "--ddgm", "/nonexistent/run", "--out", o],
    ] {
        let r = daed().args(&args).output().unwrap();
        assert!(!r.status.success(), "{args:?}");
        assert!(!String::from_utf8_lossy(&r.stderr).contains("panicked"));
        assert!(!out.exists(), "{args:?} wrote {o}");
    }
}
