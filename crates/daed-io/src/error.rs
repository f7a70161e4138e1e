//! The crate's error type: every variant says which file or thing went wrong and how.

use std::path::{Path, PathBuf};

/// Errors from reading, writing and fetching files.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system I/O failure on `path`.
    #[error("{}: {err}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        err: std::io::Error,
    },
    /// `path` exists but its contents are not what the format requires.
    #[error("{}: {msg}", path.display())]
    Format {
        /// The offending file.
        path: PathBuf,
        /// What is wrong (magic number, dimensions, counts, truncation, ...).
        msg: String,
    },
    /// A dataset or file could not be located.
    #[error("{what} not found; {hint}")]
    NotFound {
        /// What was looked for.
        what: String,
        /// Where it was looked for and how to provide it.
        hint: String,
    },
    /// A download failed (no network, no `curl`, or the server refused); `msg` says how to work offline.
    #[error("cannot download {url}: {msg}")]
    Download {
        /// The URL that could not be fetched.
        url: String,
        /// Why, and how to point daed at a local copy instead.
        msg: String,
    },
    /// A bad argument or an operation that cannot be done (no file involved).
    #[error("{0}")]
    Invalid(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Builds an [`Error::Io`] for `path`.
    pub fn io(path: impl AsRef<Path>, err: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            err,
        }
    }

    /// Builds an [`Error::Format`] for `path`.
    pub fn format(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::Format {
            path: path.as_ref().to_path_buf(),
            msg: msg.into(),
        }
    }
}

/// Reads a whole file, mapping failures to [`Error::Io`] naming the file.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}
