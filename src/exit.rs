//! Exit codes, the same on every command (fixed by the contract), and the error type
//! that carries one.

use std::fmt;

/// What a command's exit status means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done as asked.
    Ok = 0,
    /// The controller ended the operation as failed and rolled it back or pinned it.
    OperationFailed = 1,
    /// Usage or invalid input.
    Usage = 2,
    /// The CLI stopped waiting before the operation reached an outcome.
    StoppedWaiting = 3,
    /// Superseded by another writer, or a precondition did not hold.
    Conflict = 4,
    /// etcd unreachable or refused the request.
    Etcd = 5,
}

/// The table printed in `--help` and the README.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  done as asked
  1  the controller ended the operation as failed (health failure or its deadline)
     and rolled it back or pinned it
  2  usage or invalid input
  3  stopped waiting before the operation reached an outcome
  4  superseded by another writer, or a precondition did not hold
  5  etcd unreachable or refused the request";

/// An error that knows which exit code it means.
#[derive(Debug)]
pub struct Error {
    pub exit: Exit,
    pub message: String,
}

impl Error {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Error {
            exit,
            message: message.into(),
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Error::new(Exit::Usage, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Error::new(Exit::Conflict, message)
    }

    pub fn etcd(message: impl Into<String>) -> Self {
        Error::new(Exit::Etcd, message)
    }

    /// An exit code with nothing to print (the command said it all): `rune diff`'s
    /// 1, "something would change".
    pub fn silent(exit: Exit) -> Self {
        Error::new(exit, "")
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<crate::store::StoreError> for Error {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::Layout(why) => Error::usage(why),
            e => Error::etcd(e.to_string()),
        }
    }
}

impl From<crate::store::cas::KeptChanging> for Error {
    fn from(e: crate::store::cas::KeptChanging) -> Self {
        Error::conflict(e.to_string())
    }
}

impl From<crate::model::SpecError> for Error {
    fn from(e: crate::model::SpecError) -> Self {
        Error::usage(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
