//! The crate's error type.

/// Errors from the evaluation functions: bad arguments, or failures writing outputs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad argument: mismatched lengths, an image too small, a value out of range, ...
    #[error("{0}")]
    Invalid(String),
    /// Writing an output file (CSV, PNG, JSON) failed.
    #[error(transparent)]
    Io(#[from] daed_io::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Shorthand for an [`Error::Invalid`] built with `format!`.
macro_rules! invalid {
    ($($arg:tt)*) => { $crate::error::Error::Invalid(format!($($arg)*)) };
}
pub(crate) use invalid;
