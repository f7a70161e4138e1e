//! `DAED_DATA` resolution and offline behaviour of `fetch` (own test binary: it sets an env var).

mod common;
use common::{shared_data, temp_dir};
use daed_io::datasets::{load, DatasetName, DatasetSpec, Split};
use daed_io::fetch::{download, fetch, verify_md5};

#[test]
fn env_var_search_and_fetch_offline() {
    // 1. DAED_DATA pointing at an empty dir: NotFound listing the places searched.
    let empty = temp_dir("env-empty");
    std::env::set_var("DAED_DATA", &empty);
    let msg = load(&DatasetSpec::new(DatasetName::Cifar100))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains(&*empty.to_string_lossy())
            && msg.contains("./data")
            && msg.contains("../shared/data"),
        "{msg}"
    );
    assert!(msg.contains("daed data fetch cifar100 --to DIR"), "{msg}");

    // 2. The demo set written out by `fetch` is found under DAED_DATA as Fashion-MNIST test data.
    let to = temp_dir("fetch-demo");
    let files = fetch(DatasetName::FashionMnistDemo, &to).unwrap();
    assert_eq!(files.len(), 2);
    std::env::set_var("DAED_DATA", &to);
    let spec = DatasetSpec {
        split: Split::Test,
        ..DatasetSpec::new(DatasetName::FashionMnist)
    };
    assert_eq!(load(&spec).unwrap().len(), 2000);
    let md5 = daed_io::fetch::md5_hex(daed_io::datasets::DEMO_LABELS_GZ);
    verify_md5(&files[1], &md5).unwrap();

    // 3. CelebA cannot be fetched; a failed download explains how to work offline.
    let celeba = fetch(DatasetName::Celeba, &to).unwrap_err().to_string();
    assert!(
        celeba.contains("img_align_celeba") && celeba.contains("--data"),
        "{celeba}"
    );
    let dest = to.join("x.gz");
    let err = download(
        "http://127.0.0.1:9/none.gz",
        &dest,
        DatasetName::FashionMnist,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("no network access")
            && err.contains("DAED_DATA")
            && err.contains("apt-get install dataset-fashion-mnist"),
        "{err}"
    );
    assert!(!dest.exists());
    assert_eq!(
        std::fs::read_dir(&to).unwrap().count(),
        1,
        "no temporary files left"
    );

    // 4. DAED_DATA at the shared data root finds every dataset in its subdirectory.
    if let Some(d) = shared_data() {
        std::env::set_var("DAED_DATA", &d);
        let mut s = DatasetSpec {
            limit: Some(3),
            ..DatasetSpec::new(DatasetName::Mnist)
        };
        assert_eq!(load(&s).unwrap().labels.unwrap(), vec![5, 0, 4]);
        s.name = DatasetName::Cifar10;
        assert_eq!(load(&s).unwrap().labels.unwrap(), vec![6, 9, 9]);
        s.name = DatasetName::Celeba;
        assert_eq!(load(&s).unwrap().len(), 3);
    }
    std::env::remove_var("DAED_DATA");
}
