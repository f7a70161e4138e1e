//! Finished batches of a sampling run kept on disk, so that a stopped run (Ctrl-C, a crash, a
//! session's end) continues where it stopped instead of starting again.
//!
//! Each batch's noise depends only on the seed and the batch's index, so a batch drawn in an
//! earlier run has the bits it would have had in an uninterrupted one. The batches are kept as
//! raw little-endian f32 files (`batch_000003.f32`, written atomically) in a folder beside the
//! output (`TAG.parts`), with `identity.json` naming the checkpoint (by the SHA-256 of its
//! `state.json`, which holds the weights' checksums), the weights, the options' tag, the batch
//! size and the image shape. A folder of another run is refused, not mixed in or deleted.
//! `drawing_seconds.txt` adds up the seconds spent drawing the kept batches, so that a run
//! finished by a later process reports its whole sampling time.
use crate::{Error, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The identity file inside a kept-batches folder.
const IDENTITY: &str = "identity.json";
/// The lock file of the process sampling into a kept-batches folder.
const LOCK: &str = ".lock";
/// The seconds spent drawing the kept batches, as decimal text.
const SECONDS: &str = "drawing_seconds.txt";

/// Where a sampling run keeps its finished batches, and what run they belong to.
#[derive(Clone, Debug)]
pub struct KeptBatches {
    dir: PathBuf,
    identity: Value,
}

impl KeptBatches {
    /// The folder for the samples file `out` (`TAG.npz` -> `TAG.parts`) of the run `identity`.
    pub fn beside(out: &Path, identity: Value) -> Self {
        Self {
            dir: out.with_extension("parts"),
            identity,
        }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Checks that the folder, if there, belongs to this run (its `identity.json`), clears the
    /// temporary files of writes a kill cut short, and returns how many batches it holds.
    /// Creates nothing: the folder appears with the first kept batch.
    pub fn open(&self) -> Result<usize> {
        if !self.dir.is_dir() {
            return Ok(0);
        }
        self.clear_torn_writes()?;
        let id = self.dir.join(IDENTITY);
        if id.exists() {
            let bytes = std::fs::read(&id).map_err(|e| Error::io(&id, e))?;
            let theirs: Value = serde_json::from_slice(&bytes)
                .map_err(|e| Error::ckpt(&id, format!("is not the JSON daed writes: {e}")))?;
            if theirs != self.identity {
                return Err(Error::ckpt(
                    &self.dir,
                    format!(
                        "holds the finished batches of another sampling run (it differs in {}); \
                         move it away, or finish that run first",
                        differing_fields(&theirs, &self.identity)
                    ),
                ));
            }
        } else if self.batch_files()?.next().is_some() {
            return Err(Error::ckpt(
                &self.dir,
                format!("holds batch files but no {IDENTITY}: move it away"),
            ));
        }
        Ok(self.batch_files()?.count())
    }

    /// Takes the folder for this process (`.lock`, released when dropped): a second process
    /// sampling into it is refused rather than mixed in.
    pub fn lock(&self) -> Result<std::fs::File> {
        let busy = "another daed process is sampling into this folder (it holds .lock); wait for \
                    it to finish";
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        Ok(daed_io::atomic::lock_dir(&self.dir, busy)?)
    }

    /// The kept batch `index` when there, which must hold `len` values.
    pub fn load(&self, index: usize, len: usize) -> Result<Option<Vec<f32>>> {
        let p = self.batch_path(index);
        let bytes = match std::fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&p, e)),
        };
        if bytes.len() != len * 4 {
            return Err(Error::ckpt(
                &p,
                format!(
                    "holds {} bytes, not the {} of a batch of this run: remove it to draw that \
                     batch again",
                    bytes.len(),
                    len * 4
                ),
            ));
        }
        let vals: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if vals.iter().any(|v| !v.is_finite()) {
            return Err(Error::ckpt(
                &p,
                "holds a non-finite value: remove it to draw that batch again",
            ));
        }
        Ok(Some(vals))
    }

    /// Keeps batch `index`, drawn in `secs` seconds (written atomically; the identity first,
    /// with the first batch; then the batch; then the seconds' new total).
    pub fn keep(&self, index: usize, vals: &[f32], secs: f64) -> Result<()> {
        let id = self.dir.join(IDENTITY);
        if !id.exists() {
            let text = serde_json::to_vec_pretty(&self.identity)
                .map_err(|e| Error::Invalid(format!("identity of a sampling run: {e}")))?;
            daed_io::atomic::write_atomic(&id, &text)?;
        }
        let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        daed_io::atomic::write_atomic(self.batch_path(index), &bytes)?;
        let total = self.seconds()? + secs;
        daed_io::atomic::write_atomic(self.dir.join(SECONDS), format!("{total}\n").as_bytes())?;
        Ok(())
    }

    /// The seconds spent drawing the kept batches, in this process and earlier ones (0 when
    /// none are kept).
    pub fn seconds(&self) -> Result<f64> {
        let p = self.dir.join(SECONDS);
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0.0),
            Err(e) => return Err(Error::io(&p, e)),
        };
        text.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| {
                Error::ckpt(
                    &p,
                    format!("holds {:?}, not a number of seconds", text.trim()),
                )
            })
    }

    /// Removes the kept batches and the identity once the output is written; the folder goes
    /// too unless something else was put in it.
    pub fn finish(&self) -> Result<()> {
        if !self.dir.is_dir() {
            return Ok(());
        }
        let files: Vec<PathBuf> = self.batch_files()?.collect();
        let own = [IDENTITY, SECONDS, LOCK].map(|f| self.dir.join(f));
        for f in files.iter().chain(&own) {
            match std::fs::remove_file(f) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(f, e)),
                _ => {}
            }
        }
        let _ = std::fs::remove_dir(&self.dir); // left in place when not empty
        Ok(())
    }

    /// Removes the temporary files of writes a kill cut short (`batch_*.f32.tmp-PID` and
    /// `identity.json.tmp-PID`, `drawing_seconds.txt.tmp-PID` of processes no longer running).
    fn clear_torn_writes(&self) -> Result<()> {
        for p in daed_io::atomic::stale_temps(&self.dir) {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            let ours = name.is_some_and(|n| {
                n.starts_with("batch_") || n.starts_with(IDENTITY) || n.starts_with(SECONDS)
            });
            if ours {
                std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
            }
        }
        Ok(())
    }

    fn batch_path(&self, index: usize) -> PathBuf {
        self.dir.join(format!("batch_{index:06}.f32"))
    }

    fn batch_files(&self) -> Result<impl Iterator<Item = PathBuf>> {
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => Some(rd),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(&self.dir, e)),
        };
        Ok(rd.into_iter().flatten().flatten().filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let is_batch = name.starts_with("batch_") && name.ends_with(".f32");
            is_batch.then(|| e.path())
        }))
    }
}

/// The top-level fields in which two identities differ, for the error message.
fn differing_fields(a: &Value, b: &Value) -> String {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return "its format".into();
    };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let diff: Vec<String> = keys
        .into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("`{k}`: {} there, {} now", show(a.get(k)), show(b.get(k))))
        .collect();
    diff.join("; ")
}

fn show(v: Option<&Value>) -> String {
    v.map_or_else(|| "missing".into(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{batched, BatchPlan};
    use burn::tensor::{Device, Tensor};
    use serde_json::json;

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("daed_keep_{tag}_{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Draws 7 images in batches of 3 with a stand-in model (noise halved, 5 ms a batch),
    /// counting the batches it runs.
    fn draw(keep: Option<&KeptBatches>, ran: &mut Vec<u64>) -> Result<Vec<f32>> {
        let plan = BatchPlan {
            shape: [1, 2, 2],
            n: 7,
            batch: 3,
            seed: 5,
            steps: 4,
            keep,
        };
        let mut run = |x: Tensor<4>, chain: u64, _: &mut dyn FnMut(usize, usize)| {
            ran.push(chain);
            std::thread::sleep(std::time::Duration::from_millis(5));
            x.mul_scalar(0.5)
        };
        batched(&plan, &Device::default(), &mut |_, _| {}, &mut run)
    }

    #[test]
    fn a_stopped_run_continues_with_the_bits_of_an_uninterrupted_one() {
        let dir = scratch("resume");
        let mut ran = Vec::new();
        let whole = draw(None, &mut ran).unwrap();
        assert_eq!(ran, [0, 1, 2]);

        let keep = KeptBatches::beside(&dir.join("x.npz"), json!({"run": 1}));
        ran.clear();
        assert_eq!(draw(Some(&keep), &mut ran).unwrap(), whole);
        assert_eq!(keep.open().unwrap(), 3, "every batch is kept");
        let secs = keep.seconds().unwrap();
        assert!(
            (0.015..10.0).contains(&secs),
            "3 batches of 5 ms took {secs} s"
        );
        // A run stopped after its first batch, which took 1.5 s: the later ones are missing.
        for i in [1, 2] {
            std::fs::remove_file(keep.batch_path(i)).unwrap();
        }
        std::fs::write(keep.dir().join(SECONDS), "1.5\n").unwrap();
        ran.clear();
        let resumed = draw(Some(&keep), &mut ran).unwrap();
        assert_eq!(ran, [1, 2], "only the missing batches are drawn");
        let secs = keep.seconds().unwrap();
        assert!(
            (1.51..11.5).contains(&secs),
            "1.5 s before and 2 batches now: {secs} s"
        );
        assert_eq!(
            resumed.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            whole.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        keep.finish().unwrap();
        assert!(
            !keep.dir().exists(),
            "the folder goes once the output is written"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn batches_of_another_run_or_damaged_ones_are_refused_and_left_in_place() {
        let dir = scratch("refuse");
        let npz = dir.join("x.npz");
        let ours = KeptBatches::beside(&npz, json!({"batch": 3, "samples": "a"}));
        draw(Some(&ours), &mut Vec::new()).unwrap();

        let other = KeptBatches::beside(&npz, json!({"batch": 4, "samples": "a"}));
        let err = draw(Some(&other), &mut Vec::new()).unwrap_err().to_string();
        assert!(
            err.contains("x.parts") && err.contains("`batch`: 3 there, 4 now"),
            "{err}"
        );
        assert!(
            ours.batch_path(2).exists(),
            "nothing of the other run is deleted"
        );

        std::fs::write(ours.batch_path(1), [0u8; 5]).unwrap();
        let err = draw(Some(&ours), &mut Vec::new()).unwrap_err().to_string();
        assert!(
            err.contains("batch_000001.f32") && err.contains("5 bytes"),
            "{err}"
        );

        // A write a kill cut short is cleared on the next start.
        let torn = ours
            .dir()
            .join(format!("batch_000001.f32.tmp-{}", u32::MAX - 1));
        std::fs::write(&torn, [0u8; 3]).unwrap();
        std::fs::remove_file(ours.batch_path(1)).unwrap();
        draw(Some(&ours), &mut Vec::new()).unwrap();
        assert!(!torn.exists());

        // A second process sampling into the folder is refused while the first holds it.
        let held = ours.lock().unwrap();
        let err = draw(Some(&ours), &mut Vec::new()).unwrap_err().to_string();
        assert!(err.contains("another daed process"), "{err}");
        drop(held);

        // Something else in the folder stays, and so does the folder.
        std::fs::write(ours.dir().join("notes.txt"), "mine").unwrap();
        // A seconds file that is not a number is refused by name.
        std::fs::write(ours.dir().join(SECONDS), "soon").unwrap();
        let err = ours.seconds().unwrap_err().to_string();
        assert!(err.contains(SECONDS) && err.contains("\"soon\""), "{err}");
        ours.finish().unwrap();
        assert!(ours.dir().join("notes.txt").exists());
        assert!(!ours.dir().join(SECONDS).exists());
        assert!(!ours.batch_path(0).exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
