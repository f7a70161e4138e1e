//! Atomic file writes: write to a temporary sibling, fsync, then rename over the target.

use crate::error::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The temporary sibling used while writing `path`: `path.tmp-<pid>`.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "out".into());
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

/// Creates the parent directory of `path` if it is missing.
pub fn ensure_parent(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically (temp file in the same dir, fsync, rename), creating parent dirs.
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    let path = path.as_ref();
    if path.file_name().is_none() {
        return Err(Error::Invalid(format!(
            "{}: not a file path",
            path.display()
        )));
    }
    ensure_parent(path)?;
    let tmp = temp_path(path);
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(&tmp, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// Creates `dir` if missing and checks that files can be written in it (a probe file is written
/// and removed), so a read-only output folder is found before any work starts.
pub fn check_writable_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let probe = dir.join(format!(".daed-write-probe.tmp-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| {
        Error::Invalid(format!(
            "{}: the output folder is not writable ({e})",
            dir.display()
        ))
    })?;
    std::fs::remove_file(&probe).map_err(|e| Error::io(&probe, e))
}

/// An exclusive lock on `dir/.lock` (the file created if missing), held while the returned
/// file lives; `busy` is the error's message (after the folder's name) when another process
/// holds it.
pub fn lock_dir(dir: &Path, busy: &str) -> Result<std::fs::File> {
    let path = dir.join(".lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(Error::Invalid(format!("{}: {busy}", dir.display())))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
    }
}

/// The process id in a temporary name written by daed (`NAME.tmp-PID`), if it is one.
pub fn temp_owner(name: &str) -> Option<u32> {
    let (_, pid) = name.rsplit_once(".tmp-")?;
    pid.parse().ok()
}

/// Whether process `pid` is running (Linux: `/proc/PID`; elsewhere assumed running, so that
/// nothing is removed on a guess).
pub fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let proc = Path::new("/proc");
    !proc.join("self").exists() || proc.join(pid.to_string()).exists()
}

/// Temporary entries (`*.tmp-PID`) in `dir` left by processes that are no longer running: what a
/// killed write leaves behind.
pub fn stale_temps(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_str()
                .and_then(temp_owner)
                .is_some_and(|pid| !process_alive(pid))
        })
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

/// Removes [`stale_temps`] of `dir` (files or folders); returns the bytes freed.
pub fn remove_stale_temps(dir: &Path) -> Result<u64> {
    let mut freed = 0;
    for p in stale_temps(dir) {
        freed += disk_usage(&p);
        let r = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        r.map_err(|e| Error::io(&p, e))?;
    }
    Ok(freed)
}

/// Bytes in the files under `path` (a file or a folder).
pub fn disk_usage(path: &Path) -> u64 {
    let Ok(md) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !md.is_dir() {
        return md.len();
    }
    std::fs::read_dir(path)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| disk_usage(&e.path()))
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_temps_are_only_those_of_dead_processes() {
        let dir = std::env::temp_dir().join(format!("daed-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mine = dir.join(format!(".step_1.tmp-{}", std::process::id()));
        // PIDs above the kernel's maximum (4194304) never run.
        let dead = dir.join(".step_2.tmp-4194399");
        let plain = dir.join("step_3");
        for d in [&mine, &dead, &plain] {
            std::fs::create_dir_all(d).unwrap();
            std::fs::write(d.join("f"), b"1234").unwrap();
        }
        assert_eq!(stale_temps(&dir), vec![dead.clone()]);
        assert_eq!(remove_stale_temps(&dir).unwrap(), 4);
        assert!(!dead.exists() && mine.exists() && plain.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn read_only_folder_is_refused_up_front() {
        let dir = std::env::temp_dir().join(format!("daed-ro-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        check_writable_dir(&dir).unwrap();
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "probe removed");
        let mut perm = std::fs::metadata(&dir).unwrap().permissions();
        perm.set_readonly(true);
        std::fs::set_permissions(&dir, perm.clone()).unwrap();
        // root may write anyway; the check must agree with what a write does.
        let can = std::fs::write(dir.join("x"), b"").is_ok();
        let _ = std::fs::remove_file(dir.join("x"));
        assert_eq!(check_writable_dir(&dir).is_ok(), can);
        #[allow(clippy::permissions_set_readonly_false)]
        perm.set_readonly(false);
        std::fs::set_permissions(&dir, perm).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
