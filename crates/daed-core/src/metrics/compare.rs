//! Several runs' quality curves ([`Curve`], the `TAG.json` files `daed eval curve` writes) in one
//! plot and one table: FID against training time for, say, a CPU recipe and the paper's
//! configuration. Only curves with the same sample count and reference are put together: FIDs of
//! different N are biased differently and cannot share an axis.
use std::path::{Path, PathBuf};

use daed_io::plot::{Figure, Panel, Series};
use daed_io::table::{fmt_f, Table};

use super::curve::Curve;
use crate::{Error, Result};

/// One curve and the name it goes by in the legend and the table.
#[derive(Clone, Debug)]
pub struct Labelled {
    /// Legend and table name.
    pub label: String,
    /// The file it was read from.
    pub path: PathBuf,
    /// The curve.
    pub curve: Curve,
}

/// Curves of the same N against the same reference.
#[derive(Clone, Debug)]
pub struct Comparison {
    /// The curves, in the order given.
    pub curves: Vec<Labelled>,
}

impl Comparison {
    /// Reads the curves in `files`, named by `labels` (one per file), or, with no labels, by
    /// their run directory's name; errors name the file and what is wrong.
    pub fn load(files: &[PathBuf], labels: &[String]) -> Result<Self> {
        if files.is_empty() {
            return Err(Error::Invalid("no curve to compare: give --curve".into()));
        }
        if !labels.is_empty() && labels.len() != files.len() {
            return Err(Error::Invalid(format!(
                "{} labels for {} curves: give one --label per --curve, or none",
                labels.len(),
                files.len()
            )));
        }
        let mut curves = Vec::with_capacity(files.len());
        for (i, path) in files.iter().enumerate() {
            let curve = read_curve(path)?;
            let label = labels.get(i).cloned().unwrap_or_else(|| run_name(&curve));
            curves.push(Labelled {
                label,
                path: path.clone(),
                curve,
            });
        }
        let c = Comparison { curves };
        c.check_comparable()?;
        Ok(c)
    }

    /// Every curve has the first one's N and reference.
    fn check_comparable(&self) -> Result<()> {
        let first = &self.curves[0];
        for other in &self.curves[1..] {
            let (a, b) = (&first.curve, &other.curve);
            if a.n != b.n {
                return Err(Error::Invalid(format!(
                    "{} has FIDs of {} samples, {} of {}: FIDs of different N are not comparable",
                    other.path.display(),
                    b.n,
                    first.path.display(),
                    a.n
                )));
            }
            if a.reference != b.reference {
                return Err(Error::Invalid(format!(
                    "{} was scored against `{}`, {} against `{}`",
                    other.path.display(),
                    b.reference,
                    first.path.display(),
                    a.reference
                )));
            }
        }
        Ok(())
    }

    /// One row per point of every curve (extrapolated ones labelled so).
    pub fn table(&self) -> Table {
        let n = self.curves[0].curve.n;
        let mut t = Table::new([
            "curve".to_string(),
            "weights".to_string(),
            "samples".to_string(),
            "step".to_string(),
            "training time (h)".to_string(),
            "loss".to_string(),
            format!("FID (N = {n})"),
            "note".to_string(),
        ]);
        for l in &self.curves {
            let c = &l.curve;
            let weights = if c.ema { "EMA" } else { "raw" };
            let mut row = |step: String, hours: f64, loss: String, fid: f64, note: &str| {
                t.push([
                    l.label.clone(),
                    weights.to_string(),
                    c.samples_tag.clone(),
                    step,
                    fmt_f(hours, 2),
                    loss,
                    fmt_f(fid, 2),
                    note.to_string(),
                ])
            };
            for p in &c.points {
                let loss = p.loss.map_or("-".to_string(), |v| fmt_f(v, 4));
                row(p.step.to_string(), p.train_s / 3600.0, loss, p.fid, "");
            }
            for e in &c.extrapolated {
                let note = "extrapolated, not measured";
                row("-".to_string(), e.hours, "-".to_string(), e.fid, note);
            }
        }
        t
    }

    /// FID against training hours: one line per curve, and its extrapolation (if any) as a
    /// separate line named so.
    pub fn figure(&self) -> Figure {
        let n = self.curves[0].curve.n;
        let mut panel = Panel::new(
            format!("FID ({n} samples) against training time"),
            "training time (h)",
            "FID",
        );
        for l in &self.curves {
            let c = &l.curve;
            let (xs, ys) = c.measured_line();
            panel = panel.with(Series::new(l.label.clone(), xs, ys));
            if let Some((xs, ys)) = c.extrapolation_line() {
                let name = format!("{} (extrapolated)", l.label);
                panel = panel.with(Series::new(name, xs, ys));
            }
        }
        Figure::new(vec![panel])
    }

    /// Writes `STEM.md`, `STEM.csv` and `STEM.png`; returns the paths.
    pub fn write(&self, stem: &Path) -> Result<Vec<PathBuf>> {
        let name = stem
            .file_name()
            .ok_or_else(|| Error::Invalid(format!("{}: not a file name stem", stem.display())))?;
        if let Some(dir) = stem.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let p = |ext: &str| stem.with_file_name(format!("{}.{ext}", name.to_string_lossy()));
        let t = self.table();
        t.write_markdown(p("md"))?;
        t.write_csv(p("csv"))?;
        self.figure().save_png(p("png"))?;
        Ok(vec![p("md"), p("csv"), p("png")])
    }
}

/// A curve file, with an error naming it when it cannot be read or is not a curve with points.
fn read_curve(path: &Path) -> Result<Curve> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let curve: Curve = serde_json::from_str(&text).map_err(|e| {
        Error::Invalid(format!(
            "{}: not a curve `daed eval curve` wrote ({e})",
            path.display()
        ))
    })?;
    if curve.points.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: the curve has no points",
            path.display()
        )));
    }
    Ok(curve)
}

/// The last component of the curve's run directory (its path when it has none).
fn run_name(c: &Curve) -> String {
    c.run.file_name().map_or_else(
        || c.run.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::curve::CurvePoint;

    fn curve(run: &str, n: usize, reference: &str, fids: &[(u64, f64, f64)]) -> Curve {
        Curve {
            run: PathBuf::from(run),
            n,
            reference: reference.into(),
            ema: run.contains("recipe"),
            samples_tag: format!("n{n}_ddim50_eta1_seed0"),
            points: fids
                .iter()
                .map(|&(step, train_s, fid)| CurvePoint {
                    step,
                    train_s,
                    estimated_steps: 0,
                    loss: Some(0.07),
                    fid,
                    samples: PathBuf::from("s.npz"),
                    sample_s: 0.0,
                })
                .collect(),
            extrapolated: Vec::new(),
        }
    }

    fn save(dir: &Path, name: &str, c: &Curve) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, serde_json::to_string(c).unwrap()).unwrap();
        p
    }

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("daed_compare_{tag}_{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn two_runs_share_one_table_and_one_plot() {
        let d = tmp("ok");
        let a = save(
            &d,
            "a.json",
            &curve(
                "/r/recipe",
                1000,
                "fmnist",
                &[(2000, 1320.0, 42.95), (4450, 3002.0, 30.8)],
            ),
        );
        let b = save(
            &d,
            "b.json",
            &curve("/r/paper", 1000, "fmnist", &[(240, 3600.0, 150.0)]),
        );
        let c = Comparison::load(&[a.clone(), b.clone()], &[]).unwrap();
        let t = c.table();
        let col = |r: &Vec<String>, i: usize| r[i].clone();
        let rows: Vec<[String; 4]> = t
            .rows
            .iter()
            .map(|r| [col(r, 0), col(r, 1), col(r, 4), col(r, 6)])
            .collect();
        let want = [
            ["recipe", "EMA", "0.37", "42.95"],
            ["recipe", "EMA", "0.83", "30.80"],
            ["paper", "raw", "1.00", "150.00"],
        ];
        assert_eq!(rows, want.map(|r| r.map(String::from)));
        let f = c.figure();
        let names: Vec<&str> = f.panels[0].series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["recipe", "paper"]);
        let labelled = Comparison::load(&[a, b], &["CPU recipe".into(), "paper".into()]).unwrap();
        let written = labelled.write(&d.join("out/cmp")).unwrap();
        assert!(written.iter().all(|p| p.exists()), "{written:?}");
        let csv = std::fs::read_to_string(d.join("out/cmp.csv")).unwrap();
        assert!(
            csv.lines().nth(1).unwrap().starts_with("CPU recipe,"),
            "{csv}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn curves_that_cannot_share_an_axis_are_refused_by_name() {
        let d = tmp("bad");
        let a = save(
            &d,
            "a.json",
            &curve("/r/a", 1000, "fmnist", &[(1, 1.0, 50.0)]),
        );
        let n5000 = save(
            &d,
            "n5000.json",
            &curve("/r/b", 5000, "fmnist", &[(1, 1.0, 50.0)]),
        );
        let other = save(
            &d,
            "other.json",
            &curve("/r/c", 1000, "mnist", &[(1, 1.0, 50.0)]),
        );
        let empty = save(&d, "empty.json", &curve("/r/d", 1000, "fmnist", &[]));
        let junk = d.join("junk.json");
        std::fs::write(&junk, "{").unwrap();
        let err = |files: &[PathBuf], labels: &[String]| {
            Comparison::load(files, labels).unwrap_err().to_string()
        };
        let e = err(&[a.clone(), n5000.clone()], &[]);
        assert!(
            e.contains("n5000.json") && e.contains("not comparable"),
            "{e}"
        );
        let e = err(&[a.clone(), other], &[]);
        assert!(e.contains("other.json") && e.contains("`mnist`"), "{e}");
        let e = err(&[a.clone(), empty], &[]);
        assert!(e.contains("empty.json") && e.contains("no points"), "{e}");
        let e = err(&[junk], &[]);
        assert!(e.contains("junk.json") && e.contains("not a curve"), "{e}");
        let e = err(&[a.clone(), n5000], &["one".into()]);
        assert!(e.contains("1 labels for 2 curves"), "{e}");
        let e = err(&[d.join("missing.json")], &[]);
        assert!(e.contains("missing.json"), "{e}");
        assert!(err(&[], &[]).contains("--curve"));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
