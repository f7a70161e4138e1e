//! Canonical dataset sources, checksums and downloads (with the system `curl`, no HTTP crate).

use crate::atomic::{ensure_parent, temp_path};
use crate::datasets::{DatasetName, DEMO_IMAGES_GZ, DEMO_LABELS_GZ};
use crate::error::{Error, Result};
use md5::{Digest, Md5};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Fashion-MNIST download base URL.
pub const FASHION_MNIST_BASE: &str = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/";
/// MNIST download base URL (PyTorch's mirror of LeCun's files).
pub const MNIST_BASE: &str = "https://ossci-datasets.s3.amazonaws.com/mnist/";
/// CIFAR-10 binary tarball URL.
pub const CIFAR10_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";
/// MD5 of the CIFAR-10 binary tarball.
pub const CIFAR10_MD5: &str = "c32a1d4ab5d03f1284b67883e8d87530";
/// CIFAR-100 binary tarball URL.
pub const CIFAR100_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz";
/// MD5 of the CIFAR-100 binary tarball.
pub const CIFAR100_MD5: &str = "03b5dce01913d631647c71ecec9e9cb8";

/// Fashion-MNIST files and the published MD5s of the `.gz` files themselves.
pub const FASHION_MNIST_FILES: [(&str, &str); 4] = [
    (
        "train-images-idx3-ubyte.gz",
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    ),
    (
        "train-labels-idx1-ubyte.gz",
        "25c81989df183df01b3e8a0aad5dffbe",
    ),
    (
        "t10k-images-idx3-ubyte.gz",
        "bef4ecab320f06d8554ea6380940ec79",
    ),
    (
        "t10k-labels-idx1-ubyte.gz",
        "bb300cfdad3c16e7a12a480ee83cd310",
    ),
];

/// MNIST files and the MD5s of their UNCOMPRESSED contents: gzip headers differ between mirrors (names,
/// timestamps), so the `.gz` bytes are not stable; the IDX payload is. Check after decompressing.
pub const MNIST_FILES: [(&str, &str); 4] = [
    (
        "train-images-idx3-ubyte.gz",
        "6bbc9ace898e44ae57da46a324031adb",
    ),
    (
        "train-labels-idx1-ubyte.gz",
        "a25bea736e30d166cdddb491f175f624",
    ),
    (
        "t10k-images-idx3-ubyte.gz",
        "2646ac647ad5339dbf082846283269ea",
    ),
    (
        "t10k-labels-idx1-ubyte.gz",
        "27ae3e4e09519cfbb04c329615203637",
    ),
];

/// Hex MD5 of a byte slice.
pub fn md5_hex(bytes: &[u8]) -> String {
    hex(&Md5::digest(bytes))
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn hash_file<D: Digest>(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = D::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// Hex MD5 of a file, streamed.
pub fn md5_file(path: impl AsRef<Path>) -> Result<String> {
    hash_file::<Md5>(path.as_ref())
}

/// Hex SHA-256 of a file, streamed.
pub fn sha256_file(path: impl AsRef<Path>) -> Result<String> {
    hash_file::<sha2::Sha256>(path.as_ref())
}

/// Checks that the file's MD5 equals `expected` (hex, any case); a mismatch is an [`Error::Format`].
pub fn verify_md5(path: impl AsRef<Path>, expected: &str) -> Result<()> {
    let path = path.as_ref();
    let got = md5_file(path)?;
    check(path, &got, expected)
}

/// Checks the MD5 of a gzip file's decompressed contents (as published for MNIST).
pub fn verify_md5_gunzipped(path: impl AsRef<Path>, expected: &str) -> Result<()> {
    let path = path.as_ref();
    let bytes = crate::error::read_file(path)?;
    let data = crate::idx::maybe_gunzip(&bytes, path)?;
    check(path, &md5_hex(&data), expected)
}

fn check(path: &Path, got: &str, expected: &str) -> Result<()> {
    if got.eq_ignore_ascii_case(expected.trim()) {
        Ok(())
    } else {
        Err(Error::format(
            path,
            format!("MD5 mismatch: expected {expected}, got {got}"),
        ))
    }
}

fn offline_hint(name: DatasetName) -> String {
    let mut s = format!(
        "there seems to be no network access (or no `curl`). Get the {name} files another way, then pass \
         --data PATH or set DAED_DATA to their directory"
    );
    if name == DatasetName::FashionMnist {
        s.push_str("; on Debian/Ubuntu `apt-get install dataset-fashion-mnist` installs them in /usr/share/datasets/fashion-mnist");
    }
    s
}

/// Downloads `url` to `dest` with `curl -fsSL --retry 2`, via a temporary file renamed into place.
pub fn download(url: &str, dest: &Path, name: DatasetName) -> Result<()> {
    ensure_parent(dest)?;
    let tmp = temp_path(dest);
    let out = Command::new("curl")
        .args(["-fsSL", "--retry", "2", "-o"])
        .arg(&tmp)
        .arg(url)
        .output();
    let fail = |why: String| {
        let _ = std::fs::remove_file(&tmp);
        Error::Download {
            url: url.to_string(),
            msg: format!("{why}; {}", offline_hint(name)),
        }
    };
    match out {
        Err(e) => return Err(fail(format!("cannot run curl ({e})"))),
        Ok(o) if !o.status.success() => {
            let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
            return Err(fail(format!("curl failed ({}): {err}", o.status)));
        }
        Ok(_) => {}
    }
    std::fs::rename(&tmp, dest).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(dest, e)
    })
}

/// Downloads to `dest` unless a file with the right checksum is already there; `check` verifies it.
fn fetch_checked(
    url: &str,
    dest: &Path,
    name: DatasetName,
    check: &dyn Fn(&Path) -> Result<()>,
) -> Result<()> {
    if dest.is_file() && check(dest).is_ok() {
        return Ok(());
    }
    download(url, dest, name)?;
    if let Err(e) = check(dest) {
        let _ = std::fs::remove_file(dest);
        return Err(e);
    }
    Ok(())
}

fn untar(archive: &Path, to: &Path) -> Result<()> {
    let out = Command::new("tar")
        .arg("-xzf")
        .arg(archive)
        .arg("-C")
        .arg(to)
        .output();
    match out {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(Error::format(
            archive,
            format!("tar failed: {}", String::from_utf8_lossy(&o.stderr).trim()),
        )),
        Err(e) => Err(Error::Invalid(format!(
            "cannot run the system `tar` to extract {}: {e}",
            archive.display()
        ))),
    }
}

fn fetch_idx(name: DatasetName, dir: &Path) -> Result<Vec<PathBuf>> {
    let (base, files, gunzip) = match name {
        DatasetName::Mnist => (MNIST_BASE, MNIST_FILES, true),
        _ => (FASHION_MNIST_BASE, FASHION_MNIST_FILES, false),
    };
    let mut out = Vec::new();
    for (file, md5) in files {
        let dest = dir.join(file);
        let url = format!("{base}{file}");
        if gunzip {
            fetch_checked(&url, &dest, name, &|p| verify_md5_gunzipped(p, md5))?;
        } else {
            fetch_checked(&url, &dest, name, &|p| verify_md5(p, md5))?;
        }
        out.push(dest);
    }
    Ok(out)
}

fn fetch_tarball(
    name: DatasetName,
    url: &str,
    md5: &str,
    to: &Path,
    inner: &str,
) -> Result<Vec<PathBuf>> {
    let archive = to.join(url.rsplit('/').next().unwrap_or("archive.tar.gz"));
    fetch_checked(url, &archive, name, &|p| verify_md5(p, md5))?;
    untar(&archive, to)?;
    let dir = to.join(inner);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| Error::io(&dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        .collect();
    files.sort();
    Ok(files)
}

/// Downloads dataset `name` under `to` (into `to/fashion-mnist/`, `to/mnist/`, `to/cifar-10-batches-bin/`,
/// `to/cifar-100-binary/`), verifying MD5s; files already present and valid are kept. Returns the data files.
/// CelebA and downsampled ImageNet have no direct URL (error with instructions); the demo set is written
/// out from the binary.
pub fn fetch(name: DatasetName, to: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(to).map_err(|e| Error::io(to, e))?;
    match name {
        DatasetName::FashionMnist => fetch_idx(name, &to.join("fashion-mnist")),
        DatasetName::Mnist => fetch_idx(name, &to.join("mnist")),
        DatasetName::Cifar10 => fetch_tarball(name, CIFAR10_URL, CIFAR10_MD5, to, "cifar-10-batches-bin"),
        DatasetName::Cifar100 => fetch_tarball(name, CIFAR100_URL, CIFAR100_MD5, to, "cifar-100-binary"),
        DatasetName::Celeba => Err(Error::Invalid(
            "CelebA has no direct download URL: get `img_align_celeba.zip` (aligned & cropped faces) manually from \
             the authors' site (https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html), unzip it, and pass \
             --data PATH (or set DAED_DATA) to the folder holding img_align_celeba/"
                .into(),
        )),
        DatasetName::Imagenet32 | DatasetName::Imagenet64 => {
            let s = name.imagenet_size().unwrap_or(32);
            Err(Error::Invalid(format!(
                "downsampled ImageNet ({name}) has no public download URL (image-net.org needs a login): \
                 download Imagenet{s}_train_npz and Imagenet{s}_val_npz from https://image-net.org/download-images \
                 (\"Downsampled ImageNet\"), unzip them, and pass --data DIR (or set DAED_DATA) to the folder \
                 holding train_data_batch_N.npz / val_data.npz"
            )))
        }
        DatasetName::Folder => Err(Error::Invalid(
            "the folder dataset is your own images: nothing to fetch; pass --data PATH".into(),
        )),
        DatasetName::FashionMnistDemo => {
            let dir = to.join("fashion-mnist-demo");
            let a = dir.join("t10k-images-idx3-ubyte.gz");
            let b = dir.join("t10k-labels-idx1-ubyte.gz");
            crate::atomic::write_atomic(&a, DEMO_IMAGES_GZ)?;
            crate::atomic::write_atomic(&b, DEMO_LABELS_GZ)?;
            Ok(vec![a, b])
        }
    }
}
