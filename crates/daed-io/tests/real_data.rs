//! Loaders on the real files in the shared data directory.

mod common;
use common::shared_data;
use daed_io::datasets::{load, load_demo, DatasetName, DatasetSpec, Split};
use daed_io::fetch::{
    md5_file, verify_md5, verify_md5_gunzipped, FASHION_MNIST_FILES, MNIST_FILES,
};
use daed_io::folder::{read_folder, FolderOptions};
use daed_io::idx::{load_idx_pair, read_idx_labels};

fn spec(name: DatasetName, split: Split, path: Option<std::path::PathBuf>) -> DatasetSpec {
    DatasetSpec {
        split,
        path,
        ..DatasetSpec::new(name)
    }
}

#[test]
fn fashion_mnist_train_and_test() {
    let Some(d) = shared_data() else { return };
    let train = load(&spec(
        DatasetName::FashionMnist,
        Split::Train,
        Some(d.clone()),
    ))
    .unwrap();
    assert_eq!(
        (train.len(), train.channels, train.height, train.width),
        (60000, 1, 28, 28)
    );
    assert_eq!(train.labels.as_ref().unwrap()[0], 9);
    let test = load(&spec(
        DatasetName::FashionMnist,
        Split::Test,
        Some(d.join("fashion-mnist")),
    ))
    .unwrap();
    assert_eq!((test.len(), test.height, test.width), (10000, 28, 28));
    assert_eq!(test.label(0), Some(9), "first test label is 9 (ankle boot)");
    let labels = test.labels.as_ref().unwrap();
    assert!(labels.iter().all(|&l| l < 10));
    for c in 0..10 {
        assert_eq!(
            labels.iter().filter(|&&l| l == c).count(),
            1000,
            "class {c} has 1000 test images"
        );
    }
}

#[test]
fn mnist_counts_and_first_label() {
    let Some(d) = shared_data() else { return };
    let test = load(&spec(
        DatasetName::Mnist,
        Split::Test,
        Some(d.join("mnist")),
    ))
    .unwrap();
    assert_eq!(test.len(), 10000);
    assert_eq!(test.label(0), Some(7));
    let train = load_idx_pair(
        d.join("mnist/train-images-idx3-ubyte.gz"),
        d.join("mnist/train-labels-idx1-ubyte.gz"),
    )
    .unwrap();
    assert_eq!((train.len(), train.height, train.width), (60000, 28, 28));
    assert_eq!(train.label(0), Some(5));
}

#[test]
fn mnist_by_file_path_and_limit() {
    let Some(d) = shared_data() else { return };
    let mut s = spec(
        DatasetName::Mnist,
        Split::Test,
        Some(d.join("mnist/t10k-images-idx3-ubyte.gz")),
    );
    s.limit = Some(5);
    let set = load(&s).unwrap();
    assert_eq!(set.len(), 5);
    assert_eq!(set.labels.unwrap(), vec![7, 2, 1, 0, 4]);
}

#[test]
fn cifar10_first4000() {
    let Some(d) = shared_data() else { return };
    let set = load(&spec(DatasetName::Cifar10, Split::Train, Some(d.clone()))).unwrap();
    assert_eq!(
        (set.len(), set.channels, set.height, set.width),
        (4000, 3, 32, 32)
    );
    let want = [6, 9, 9, 4, 1, 1, 2, 7, 8, 3, 4, 7, 7, 2, 9, 9, 9, 3, 2, 6];
    assert_eq!(&set.labels.as_ref().unwrap()[..20], &want);
    verify_md5(
        d.join("cifar10-first4000/data_batch_1_first4000.bin"),
        "07704ae233cc40e200a600eed4f4e13c",
    )
    .unwrap();
    // No test batch in this subset: the test split is not found, with a useful hint.
    let err = load(&spec(
        DatasetName::Cifar10,
        Split::Test,
        Some(d.join("cifar10-first4000")),
    ))
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("not found") && msg.contains("--data PATH") && msg.contains("DAED_DATA"),
        "{msg}"
    );
}

#[test]
fn celeba_preset() {
    let Some(d) = shared_data() else { return };
    let set = load(&spec(DatasetName::Celeba, Split::Train, Some(d.clone()))).unwrap();
    assert_eq!(
        (set.len(), set.channels, set.height, set.width),
        (32, 3, 64, 64)
    );
    assert!(set.labels.is_none());
    let mut s = spec(
        DatasetName::Celeba,
        Split::Train,
        Some(d.join("celeba-first32")),
    );
    s.limit = Some(4);
    s.celeba_crop = 178;
    let small = load(&s).unwrap();
    assert_eq!((small.len(), small.height), (4, 64));
    assert_ne!(
        small.image(0),
        set.image(0),
        "the crop size changes the pixels"
    );
}

#[test]
fn peek_folder_mixed_sizes() {
    let Some(d) = shared_data() else { return };
    let peek = d.join("peek");
    let err = read_folder(&peek, &FolderOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("peek") && err.contains("resize"), "{err}");
    let opts = FolderOptions {
        size: Some((32, 32)),
        ..Default::default()
    };
    let set = read_folder(&peek, &opts).unwrap();
    assert_eq!(
        (set.len(), set.channels, set.height, set.width),
        (100, 3, 32, 32)
    );
    let gray = read_folder(
        &peek,
        &FolderOptions {
            size: Some((28, 28)),
            crop: None,
            channels: 1,
        },
    )
    .unwrap();
    assert_eq!((gray.len(), gray.channels), (100, 1));
    // Sorted by name: cifar100_*, cifar10_*, fashionMNIST_*, imagenet_*, mnist_*; mnist_00 is index 80
    // and, being 28x28 gray already, equals MNIST test image 0 exactly.
    let mnist = daed_io::idx::read_idx_images(d.join("mnist/t10k-images-idx3-ubyte.gz")).unwrap();
    assert_eq!(gray.image(80), mnist.image(0));
}

#[test]
fn embedded_demo_matches_real_test_set() {
    let demo = load_demo().unwrap();
    assert_eq!(
        (demo.len(), demo.channels, demo.height, demo.width),
        (2000, 1, 28, 28)
    );
    let via_load = load(&DatasetSpec::new("demo".parse().unwrap())).unwrap();
    assert_eq!(via_load.len(), 2000);
    let Some(d) = shared_data() else { return };
    let labels = read_idx_labels(d.join("fashion-mnist/t10k-labels-idx1-ubyte.gz")).unwrap();
    assert_eq!(demo.labels.as_ref().unwrap()[..], labels[..2000]);
    let real =
        daed_io::idx::read_idx_images(d.join("fashion-mnist/t10k-images-idx3-ubyte.gz")).unwrap();
    assert_eq!(demo.pixels[..], real.take(2000).pixels[..]);
}

#[test]
fn published_checksums() {
    let Some(d) = shared_data() else { return };
    for (file, md5) in FASHION_MNIST_FILES {
        assert_eq!(
            md5_file(d.join("fashion-mnist").join(file)).unwrap(),
            md5,
            "{file}"
        );
    }
    for (file, md5) in MNIST_FILES {
        verify_md5_gunzipped(d.join("mnist").join(file), md5).unwrap();
    }
    let wrong = verify_md5(
        d.join("fashion-mnist/t10k-labels-idx1-ubyte.gz"),
        "00000000000000000000000000000000",
    );
    assert!(wrong.unwrap_err().to_string().contains("MD5 mismatch"));
}

#[test]
fn inception_weights_sha256() {
    let Some(d) = shared_data() else { return };
    let sha =
        daed_io::fetch::sha256_file(d.join("inception/fid_inception_2015-12-05_pool3.safetensors"))
            .unwrap();
    assert_eq!(
        sha,
        "72245b2ec18f2706a07d26fdf0f030283b5e1182fff45d5cda0c56747d07526a"
    );
}

#[test]
fn celeba_official_partition_file() {
    let Some(d) = shared_data() else { return };
    let root = common::temp_dir("celeba-part");
    let imgs = root.join("img_align_celeba");
    std::fs::create_dir_all(&imgs).unwrap();
    for i in 1..=6 {
        let f = format!("{i:06}.jpg");
        std::fs::copy(d.join("celeba-first32").join(&f), imgs.join(&f)).unwrap();
    }
    let part =
        "000001.jpg 0\n000002.jpg 0\n000003.jpg 0\n000004.jpg 1\n000005.jpg 2\n000006.jpg 2\n";
    std::fs::write(root.join("list_eval_partition.txt"), part).unwrap();
    let train = load(&spec(DatasetName::Celeba, Split::Train, Some(root.clone()))).unwrap();
    let test = load(&spec(DatasetName::Celeba, Split::Test, Some(root.clone()))).unwrap();
    assert_eq!((train.len(), test.len()), (3, 2));
    let all = load(&spec(
        DatasetName::Celeba,
        Split::Train,
        Some(d.join("celeba-first32")),
    ))
    .unwrap();
    assert_eq!(test.image(0), all.image(4), "test starts at 000005.jpg");
    std::fs::write(root.join("list_eval_partition.txt"), "000001.jpg x\n").unwrap();
    let err = load(&spec(DatasetName::Celeba, Split::Train, Some(root)))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("list_eval_partition.txt") && err.contains("line 1"),
        "{err}"
    );
}
