//! `daed data`: fetch and inspect datasets.
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use daed_io::datasets::{self, DatasetName, DatasetSpec};

#[derive(Subcommand)]
pub enum DataCmd {
    /// Download a dataset from its canonical location and check its published checksums.
    Fetch {
        /// fashion-mnist, mnist, cifar10, cifar100 (celeba, imagenet32 and imagenet64 must be downloaded by hand).
        name: String,
        /// Directory to put it in.
        #[arg(long)]
        to: PathBuf,
    },
    /// Load a dataset and print its size, shape and first labels.
    Info(InfoArgs),
}

#[derive(Args)]
pub struct InfoArgs {
    /// Dataset name.
    name: String,
    /// A file or directory holding it.
    #[arg(long)]
    data: Option<PathBuf>,
    /// train or test.
    #[arg(long, default_value = "train")]
    split: String,
}

pub fn run(c: DataCmd) -> Result<()> {
    match c {
        DataCmd::Fetch { name, to } => {
            let n: DatasetName = name.parse()?;
            for p in daed_io::fetch::fetch(n, &to)? {
                println!("{}", p.display());
            }
        }
        DataCmd::Info(a) => {
            let mut spec = DatasetSpec::new(a.name.parse()?);
            spec.split = a.split.parse()?;
            spec.path = a.data;
            let set = datasets::load(&spec)?;
            println!(
                "{}: {} images, {}x{}x{} (C x H x W)",
                spec.name,
                set.len(),
                set.channels,
                set.height,
                set.width
            );
            if let Some(l) = &set.labels {
                let first: Vec<String> = l.iter().take(20).map(|x| x.to_string()).collect();
                println!("first labels: {}", first.join(" "));
            }
        }
    }
    Ok(())
}
