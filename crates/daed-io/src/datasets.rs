//! Named datasets and where to find them: [`DatasetName`], [`Split`], [`DatasetSpec`] and [`load`].

use crate::cifar::{read_cifar, CifarKind};
use crate::error::{Error, Result};
use crate::folder::{is_image_name, read_folder_limit, FolderOptions, CELEBA_DEFAULT_CROP};
use crate::idx::{load_idx_pair, load_idx_pair_from_bytes};
use crate::imagenet::{read_imagenet_npz, IMAGENET_CLASSES};
use crate::images::ImageSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Environment variable naming a data directory.
pub const DATA_ENV: &str = "DAED_DATA";

/// Embedded demo images: the first 2,000 Fashion-MNIST test images (gzipped IDX, MIT licence).
pub const DEMO_IMAGES_GZ: &[u8] =
    include_bytes!("../data/fashion-mnist-demo/t10k-images-idx3-ubyte.gz");
/// Embedded demo labels: the first 2,000 Fashion-MNIST test labels (gzipped IDX, MIT licence).
pub const DEMO_LABELS_GZ: &[u8] =
    include_bytes!("../data/fashion-mnist-demo/t10k-labels-idx1-ubyte.gz");

/// The datasets daed knows how to load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DatasetName {
    /// Fashion-MNIST, 28x28 gray, 10 classes (IDX files).
    FashionMnist,
    /// MNIST digits, 28x28 gray, 10 classes (IDX files).
    Mnist,
    /// CIFAR-10, 32x32 RGB, 10 classes (binary batches).
    Cifar10,
    /// CIFAR-100, 32x32 RGB, 100 fine classes (binary files).
    Cifar100,
    /// CelebA aligned faces, centre-cropped and resized to 64x64 RGB.
    Celeba,
    /// Any folder of PNG/JPEG images (needs a path).
    Folder,
    /// The first 2,000 Fashion-MNIST test images, embedded in the binary.
    FashionMnistDemo,
    /// Downsampled ImageNet, 32x32 RGB, 1000 classes (the published `Imagenet32_*_npz` files).
    Imagenet32,
    /// Downsampled ImageNet, 64x64 RGB, 1000 classes (the published `Imagenet64_*_npz` files).
    Imagenet64,
}

impl DatasetName {
    /// Every dataset name.
    pub const ALL: [DatasetName; 9] = [
        DatasetName::FashionMnist,
        DatasetName::Mnist,
        DatasetName::Cifar10,
        DatasetName::Cifar100,
        DatasetName::Celeba,
        DatasetName::Folder,
        DatasetName::FashionMnistDemo,
        DatasetName::Imagenet32,
        DatasetName::Imagenet64,
    ];

    /// The canonical name, as accepted by `FromStr` and printed by `Display`.
    pub fn as_str(self) -> &'static str {
        match self {
            DatasetName::FashionMnist => "fashion-mnist",
            DatasetName::Mnist => "mnist",
            DatasetName::Cifar10 => "cifar10",
            DatasetName::Cifar100 => "cifar100",
            DatasetName::Celeba => "celeba",
            DatasetName::Folder => "folder",
            DatasetName::FashionMnistDemo => "fashion-mnist-demo",
            DatasetName::Imagenet32 => "imagenet32",
            DatasetName::Imagenet64 => "imagenet64",
        }
    }

    /// Image shape (channels, height, width) this dataset loads as, when fixed.
    pub fn shape(self) -> Option<(usize, usize, usize)> {
        match self {
            DatasetName::FashionMnist | DatasetName::Mnist | DatasetName::FashionMnistDemo => {
                Some((1, 28, 28))
            }
            DatasetName::Cifar10 | DatasetName::Cifar100 | DatasetName::Imagenet32 => {
                Some((3, 32, 32))
            }
            DatasetName::Celeba | DatasetName::Imagenet64 => Some((3, 64, 64)),
            DatasetName::Folder => None,
        }
    }

    /// Number of label classes, for labelled datasets.
    pub fn num_classes(self) -> Option<usize> {
        match self {
            DatasetName::FashionMnist | DatasetName::Mnist | DatasetName::FashionMnistDemo => {
                Some(10)
            }
            DatasetName::Cifar10 => Some(10),
            DatasetName::Cifar100 => Some(100),
            DatasetName::Imagenet32 | DatasetName::Imagenet64 => Some(IMAGENET_CLASSES),
            DatasetName::Celeba | DatasetName::Folder => None,
        }
    }

    /// Image side of the downsampled-ImageNet datasets (32 or 64), `None` for the others.
    pub fn imagenet_size(self) -> Option<usize> {
        match self {
            DatasetName::Imagenet32 => Some(32),
            DatasetName::Imagenet64 => Some(64),
            _ => None,
        }
    }
}

impl fmt::Display for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DatasetName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "fashion-mnist" | "fashion_mnist" | "fashionmnist" | "fmnist" => DatasetName::FashionMnist,
            "mnist" => DatasetName::Mnist,
            "cifar10" | "cifar-10" | "cifar_10" => DatasetName::Cifar10,
            "cifar100" | "cifar-100" | "cifar_100" => DatasetName::Cifar100,
            "celeba" | "celeba64" | "celeba-64" => DatasetName::Celeba,
            "folder" => DatasetName::Folder,
            "demo" | "fashion-mnist-demo" | "fashion_mnist_demo" | "fmnist-demo" => DatasetName::FashionMnistDemo,
            "imagenet32" | "imagenet-32" | "imagenet_32" => DatasetName::Imagenet32,
            "imagenet64" | "imagenet-64" | "imagenet_64" => DatasetName::Imagenet64,
            _ => {
                return Err(Error::Invalid(format!(
                    "unknown dataset '{s}'; valid names: fashion-mnist (fashion_mnist, fmnist), mnist, \
                     cifar10 (cifar-10), cifar100 (cifar-100), celeba, folder, demo (fashion-mnist-demo), \
                     imagenet32 (imagenet-32), imagenet64 (imagenet-64)"
                )))
            }
        })
    }
}

/// Which part of a dataset to load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Split {
    /// The training split.
    #[default]
    Train,
    /// The test split.
    Test,
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::Test => "test",
        })
    }
}

impl FromStr for Split {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "train" => Ok(Split::Train),
            "test" | "t10k" => Ok(Split::Test),
            _ => Err(Error::Invalid(format!(
                "unknown split '{s}'; valid: train, test"
            ))),
        }
    }
}

/// What to load: dataset, split, an optional file or directory, CelebA's crop and a size limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatasetSpec {
    /// Which dataset.
    pub name: DatasetName,
    /// Train or test split (CelebA uses `list_eval_partition.txt` when present; downsampled ImageNet's
    /// test split is `val_data.npz`; Folder and the demo ignore it).
    pub split: Split,
    /// A data file or directory; `None` searches `DAED_DATA`, `./data`, `../shared/data`, ...
    pub path: Option<PathBuf>,
    /// CelebA centre-crop side before resizing to 64x64 (140 by default).
    pub celeba_crop: u32,
    /// Keep only the first N images.
    pub limit: Option<usize>,
}

impl DatasetSpec {
    /// A spec for `name`, train split, searched path, CelebA crop 140, no limit.
    pub fn new(name: DatasetName) -> Self {
        DatasetSpec {
            name,
            split: Split::Train,
            path: None,
            celeba_crop: CELEBA_DEFAULT_CROP,
            limit: None,
        }
    }
}

/// Data directories searched when no path is given, in order.
pub fn search_dirs(name: DatasetName) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os(DATA_ENV) {
        if !d.is_empty() {
            dirs.push(PathBuf::from(d));
        }
    }
    dirs.push(PathBuf::from("./data"));
    dirs.push(PathBuf::from("../shared/data"));
    if name == DatasetName::FashionMnist {
        dirs.push(PathBuf::from("/usr/share/datasets/fashion-mnist"));
    }
    dirs
}

/// `dir` itself, then its subdirectories whose names fit the dataset (sorted).
fn candidate_dirs(dir: &Path, name: DatasetName) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut subs: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().to_ascii_lowercase();
            match name {
                DatasetName::FashionMnist => {
                    n.starts_with("fashion-mnist")
                        || n.starts_with("fashion_mnist")
                        || n == "fashionmnist"
                }
                DatasetName::Mnist => {
                    n == "mnist" || n.starts_with("mnist-") || n.starts_with("mnist_")
                }
                DatasetName::Cifar10 => {
                    (n.starts_with("cifar10") || n.starts_with("cifar-10"))
                        && !(n.starts_with("cifar100") || n.starts_with("cifar-100"))
                }
                DatasetName::Cifar100 => n.starts_with("cifar100") || n.starts_with("cifar-100"),
                DatasetName::Celeba => n.starts_with("celeba") || n == "img_align_celeba",
                DatasetName::Imagenet32 | DatasetName::Imagenet64 => is_imagenet_dir(&n, name),
                DatasetName::Folder | DatasetName::FashionMnistDemo => false,
            }
        })
        .map(|e| e.path())
        .collect();
    subs.sort();
    // One more level for layouts like FashionMNIST/raw or celeba/img_align_celeba.
    for s in subs.clone() {
        for extra in [
            "raw",
            "img_align_celeba",
            "cifar-10-batches-bin",
            "cifar-100-binary",
        ] {
            let p = s.join(extra);
            if p.is_dir() {
                subs.push(p);
            }
        }
        // imagenet32/Imagenet32_train_npz, imagenet32/Imagenet32_val_npz.
        if name.imagenet_size().is_some() {
            subs.extend(sorted_subdirs(&s, |n| is_imagenet_dir(n, name)));
        }
    }
    out.extend(subs);
    out
}

/// The subdirectories of `dir` whose lower-cased names pass `keep`, sorted.
fn sorted_subdirs(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| {
        p.is_dir()
            && p.file_name()
                .is_some_and(|n| keep(&n.to_string_lossy().to_ascii_lowercase()))
    });
    v.sort();
    v
}

/// Whether a lower-cased directory name fits a downsampled-ImageNet dataset (`imagenet32`,
/// `Imagenet32_train_npz`, `imagenet-64`, ...).
fn is_imagenet_dir(n: &str, name: DatasetName) -> bool {
    let Some(size) = name.imagenet_size() else {
        return false;
    };
    ["imagenet", "imagenet-", "imagenet_"].iter().any(|p| {
        n.strip_prefix(p)
            .and_then(|r| r.strip_prefix(&*size.to_string()))
            .is_some_and(|r| !r.starts_with(|c: char| c.is_ascii_digit()))
    })
}

fn first_existing(dir: &Path, names: &[String]) -> Option<PathBuf> {
    names.iter().map(|n| dir.join(n)).find(|p| p.is_file())
}

/// Finds (images, labels) IDX files for a split in `dir`.
fn find_idx(dir: &Path, split: Split) -> Option<(PathBuf, PathBuf)> {
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    let names = |kind: &str, nd: &str| -> Vec<String> {
        let base = format!("{prefix}-{kind}-{nd}-ubyte");
        let dotted = format!("{prefix}-{kind}.{nd}-ubyte");
        vec![format!("{base}.gz"), base, format!("{dotted}.gz"), dotted]
    };
    let images = first_existing(dir, &names("images", "idx3"))?;
    let labels = first_existing(dir, &names("labels", "idx1"))?;
    Some((images, labels))
}

fn bin_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.is_file() && p.extension().is_some_and(|e| e.eq_ignore_ascii_case("bin")));
    v.sort();
    v
}

/// Finds CIFAR-10 batch files for a split in `dir`.
fn find_cifar10(dir: &Path, split: Split) -> Option<Vec<PathBuf>> {
    let canonical: Vec<PathBuf> = match split {
        Split::Train => (1..=5)
            .map(|i| dir.join(format!("data_batch_{i}.bin")))
            .filter(|p| p.is_file())
            .collect(),
        Split::Test => [dir.join("test_batch.bin")]
            .into_iter()
            .filter(|p| p.is_file())
            .collect(),
    };
    if !canonical.is_empty() {
        return Some(canonical);
    }
    // Fallback: any *.bin (e.g. data_batch_1_first4000.bin); names with "test" belong to the test split.
    let mut any = bin_files(dir);
    any.retain(|p| {
        let n = p
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        let is_test = n.contains("test");
        let is_meta = n.contains("meta");
        !is_meta && (is_test == (split == Split::Test))
    });
    (!any.is_empty()).then_some(any)
}

/// Finds the CIFAR-100 file for a split in `dir`.
fn find_cifar100(dir: &Path, split: Split) -> Option<Vec<PathBuf>> {
    let name = match split {
        Split::Train => "train.bin",
        Split::Test => "test.bin",
    };
    let p = dir.join(name);
    p.is_file().then(|| vec![p])
}

/// Finds downsampled-ImageNet npz files for a split in `dir`: every `train_data_batch_N.npz` in
/// numeric order of N (train), or `val_data.npz` (test).
fn find_imagenet(dir: &Path, split: Split) -> Option<Vec<PathBuf>> {
    if split == Split::Test {
        let p = dir.join("val_data.npz");
        return p.is_file().then(|| vec![p]);
    }
    let mut batches: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let num = n
                .strip_prefix("train_data_batch_")?
                .strip_suffix(".npz")?
                .parse::<u64>()
                .ok()?;
            let p = e.path();
            p.is_file().then_some((num, p))
        })
        .collect();
    batches.sort();
    (!batches.is_empty()).then(|| batches.into_iter().map(|(_, p)| p).collect())
}

fn has_images(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).any(|e| is_image_name(&e.path())))
        .unwrap_or(false)
}

/// Finds a folder of CelebA images in `dir`.
fn find_celeba(dir: &Path) -> Option<PathBuf> {
    let inner = dir.join("img_align_celeba");
    if inner.is_dir() && has_images(&inner) {
        return Some(inner);
    }
    has_images(dir).then(|| dir.to_path_buf())
}

fn not_found(name: DatasetName, split: Split, searched: &[PathBuf]) -> Error {
    let list: Vec<String> = searched.iter().map(|p| p.display().to_string()).collect();
    let searched = if list.is_empty() {
        "(nothing)".to_string()
    } else {
        list.join(", ")
    };
    let hint = match name.imagenet_size() {
        Some(s) => format!(
            "searched: {searched} for {}; ImageNet cannot be fetched automatically: download \
             Imagenet{s}_train_npz / Imagenet{s}_val_npz from image-net.org (login needed), unzip them, \
             and pass --data PATH or set {DATA_ENV}",
            match split {
                Split::Train => "train_data_batch_N.npz",
                Split::Test => "val_data.npz",
            }
        ),
        None => format!(
            "searched: {searched}; pass --data PATH, set {DATA_ENV}, or run `daed data fetch {name} --to DIR`"
        ),
    };
    Error::NotFound {
        what: format!("{name} ({split} split)"),
        hint,
    }
}

/// Loads the dataset described by `spec` (see the module docs for the search order). Downsampled
/// ImageNet loads every `train_data_batch_N.npz` in order of N (train) or `val_data.npz` (test).
pub fn load(spec: &DatasetSpec) -> Result<ImageSet> {
    let name = spec.name;
    let set = match name {
        DatasetName::FashionMnistDemo => load_demo()?,
        DatasetName::Folder => {
            let Some(p) = &spec.path else {
                return Err(Error::NotFound {
                    what: "image folder".into(),
                    hint:
                        "the folder dataset needs a directory of PNG/JPEG images: pass --data PATH"
                            .into(),
                });
            };
            return read_folder_limit(p, &FolderOptions::default(), spec.limit);
        }
        _ => {
            let roots = match &spec.path {
                Some(p) if p.is_file() => return load_file(spec, p),
                Some(p) if !p.exists() => {
                    return Err(Error::NotFound {
                        what: format!("{}", p.display()),
                        hint: format!("the --data path for {name} does not exist"),
                    })
                }
                Some(p) => vec![p.clone()],
                None => search_dirs(name),
            };
            let mut searched = Vec::new();
            for root in &roots {
                for dir in candidate_dirs(root, name) {
                    searched.push(dir.clone());
                    if let Some(set) = load_from_dir(spec, &dir)? {
                        return Ok(set);
                    }
                }
            }
            return Err(not_found(name, spec.split, &searched));
        }
    };
    Ok(apply_limit(set, spec.limit))
}

fn apply_limit(set: ImageSet, limit: Option<usize>) -> ImageSet {
    match limit {
        Some(n) if n < set.len() => set.take(n),
        _ => set,
    }
}

/// Tries to load `spec` from one directory; `Ok(None)` when the files are not there.
fn load_from_dir(spec: &DatasetSpec, dir: &Path) -> Result<Option<ImageSet>> {
    let set = match spec.name {
        DatasetName::FashionMnist | DatasetName::Mnist => match find_idx(dir, spec.split) {
            Some((i, l)) => load_idx_pair(i, l)?,
            None => return Ok(None),
        },
        DatasetName::Cifar10 => match find_cifar10(dir, spec.split) {
            Some(files) => read_cifar(&files, CifarKind::Cifar10)?,
            None => return Ok(None),
        },
        DatasetName::Cifar100 => match find_cifar100(dir, spec.split) {
            Some(files) => read_cifar(&files, CifarKind::Cifar100Fine)?,
            None => return Ok(None),
        },
        DatasetName::Celeba => match find_celeba(dir) {
            Some(d) => return load_celeba(&d, spec).map(Some),
            None => return Ok(None),
        },
        DatasetName::Imagenet32 | DatasetName::Imagenet64 => match find_imagenet(dir, spec.split) {
            Some(files) => read_imagenet_npz(&files, imagenet_side(spec.name), spec.limit)?,
            None => return Ok(None),
        },
        DatasetName::Folder | DatasetName::FashionMnistDemo => return Ok(None),
    };
    Ok(Some(apply_limit(set, spec.limit)))
}

/// CelebA's official split file, next to the image folder or one level up (also under `Eval/`).
fn celeba_partition_file(img_dir: &Path) -> Option<PathBuf> {
    let dirs = [Some(img_dir), img_dir.parent()];
    dirs.into_iter().flatten().find_map(|d| {
        ["list_eval_partition.txt", "Eval/list_eval_partition.txt"]
            .iter()
            .map(|r| d.join(r))
            .find(|p| p.is_file())
    })
}

/// Loads CelebA images from `img_dir`; with `list_eval_partition.txt` present, train is partition 0
/// and test partition 2, otherwise every image is used for either split.
fn load_celeba(img_dir: &Path, spec: &DatasetSpec) -> Result<ImageSet> {
    let opts = FolderOptions::celeba(spec.celeba_crop);
    let Some(part) = celeba_partition_file(img_dir) else {
        return read_folder_limit(img_dir, &opts, spec.limit);
    };
    let want = match spec.split {
        Split::Train => "0",
        Split::Test => "2",
    };
    let text = std::fs::read_to_string(&part).map_err(|e| Error::io(&part, e))?;
    let mut keep = std::collections::HashSet::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let mut it = line.split_whitespace();
        match (it.next(), it.next()) {
            (Some(name), Some(p)) if matches!(p, "0" | "1" | "2") => {
                if p == want {
                    keep.insert(name.to_string());
                }
            }
            _ => {
                return Err(Error::format(
                    &part,
                    format!("line {}: expected `NAME.jpg 0|1|2`, got `{line}`", i + 1),
                ))
            }
        }
    }
    let mut files = crate::folder::list_files(img_dir)?;
    files.retain(|f| {
        f.file_name()
            .is_some_and(|n| keep.contains(&*n.to_string_lossy()))
    });
    if let Some(n) = spec.limit {
        files.truncate(n);
    }
    crate::folder::load_image_files(&files, &opts, img_dir)
}

fn imagenet_side(name: DatasetName) -> usize {
    name.imagenet_size().unwrap_or(32)
}

/// Loads `spec` from a single file given as its path.
fn load_file(spec: &DatasetSpec, file: &Path) -> Result<ImageSet> {
    let set = match spec.name {
        DatasetName::FashionMnist | DatasetName::Mnist => {
            let fname = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !fname.contains("images") {
                return Err(Error::Invalid(format!(
                    "{}: give the IDX images file (…-images-idx3-ubyte[.gz]) or its directory",
                    file.display()
                )));
            }
            let labels = file.with_file_name(
                fname
                    .replace("images-idx3", "labels-idx1")
                    .replace("images.idx3", "labels.idx1"),
            );
            if labels.is_file() {
                load_idx_pair(file, &labels)?
            } else {
                crate::idx::read_idx_images(file)?
            }
        }
        DatasetName::Cifar10 => read_cifar(&[file], CifarKind::Cifar10)?,
        DatasetName::Cifar100 => read_cifar(&[file], CifarKind::Cifar100Fine)?,
        DatasetName::Imagenet32 | DatasetName::Imagenet64 => {
            read_imagenet_npz(&[file], imagenet_side(spec.name), spec.limit)?
        }
        _ => {
            return Err(Error::Invalid(format!(
                "{}: {} needs a directory, not a file",
                file.display(),
                spec.name
            )))
        }
    };
    Ok(apply_limit(set, spec.limit))
}

/// The embedded demo set: the first 2,000 Fashion-MNIST test images with labels (Fashion-MNIST is MIT-licensed,
/// Copyright (c) 2017 Zalando SE).
pub fn load_demo() -> Result<ImageSet> {
    load_idx_pair_from_bytes(
        DEMO_IMAGES_GZ,
        DEMO_LABELS_GZ,
        Path::new("<embedded fashion-mnist-demo>"),
    )
}
