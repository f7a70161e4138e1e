//! The library's one error type: every variant says what was wrong and where.
use std::path::PathBuf;

/// Errors raised by daed-core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {err}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error (not chained as a source: the message already includes it).
        err: std::io::Error,
    },
    /// A configuration field is missing, unknown or out of range.
    #[error("config {origin}: {msg}")]
    Config {
        /// The file (or "defaults") the value came from.
        origin: String,
        /// What is wrong, naming the key.
        msg: String,
    },
    /// A checkpoint or weight file is missing, incomplete, corrupt or does not fit the model.
    #[error("{path}: {msg}")]
    Checkpoint {
        /// The checkpoint file or directory.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// A dataset or file-format error from daed-io.
    #[error(transparent)]
    Data(#[from] daed_io::error::Error),
    /// An error from the metric and analysis kernels.
    #[error(transparent)]
    Eval(#[from] daed_eval::Error),
    /// A value given by the caller is not acceptable.
    #[error("{0}")]
    Invalid(String),
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Builds an [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, err: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            err,
        }
    }
    /// Builds an [`Error::Checkpoint`] for `path`.
    pub fn ckpt(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Checkpoint {
            path: path.into(),
            msg: msg.into(),
        }
    }
}
