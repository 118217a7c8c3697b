//! The library's typed errors.
//!
//! Every variant renders as one line that names the problem and the thing it concerns, so the CLI
//! can print `error: {err}` and nothing else.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A digest string that does not match the OCI grammar or its algorithm's encoding.
    #[error("invalid digest {input:?}: {reason}")]
    InvalidDigest {
        /// The rejected text.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The digest's algorithm is valid but this store cannot compute it.
    #[error(
        "cannot {action} digest {digest}: algorithm {algorithm:?} is not supported (supported: sha256, sha512, blake3)"
    )]
    UnsupportedAlgorithm {
        /// The digest concerned.
        digest: String,
        /// The algorithm name.
        algorithm: String,
        /// What was attempted ("verify", "compute").
        action: &'static str,
    },
    /// Content hashed to another digest than the one expected.
    #[error("digest mismatch: expected {expected}, content hashes to {actual}")]
    DigestMismatch {
        /// The digest the caller announced.
        expected: String,
        /// The digest of the bytes received.
        actual: String,
    },
    /// Content had another length than the one expected.
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The digest concerned.
        digest: String,
        /// The size the caller announced.
        expected: u64,
        /// The number of bytes received (or present on disk).
        actual: u64,
    },
    /// A tag that does not match the OCI ref-name grammar.
    #[error("invalid tag {name:?}: {reason}")]
    InvalidTag {
        /// The rejected name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A tag, digest or file that is not in the store.
    #[error("{0} not found")]
    NotFound(String),
    /// A write would make content reachable that a collection has partly removed (while it
    /// runs, or, after it failed, until a collection completes).
    #[error(
        "{digest} is being collected: {gone}, which it reaches, is already gone; push {gone} \
         again, or retry once a collection has completed"
    )]
    BeingCollected {
        /// The digest the write would make reachable.
        digest: String,
        /// A digest below it (a child or a referrer) that the collection removed.
        gone: String,
    },
    /// A manifest operation was asked of content that is not a manifest.
    #[error("{digest} is not a manifest or index (media type {media_type})")]
    NotAManifest {
        /// The digest concerned.
        digest: String,
        /// What the store knows of its type.
        media_type: String,
    },
    /// A manifest that cannot be parsed into edges.
    #[error("invalid manifest{}: {reason}", digest.as_ref().map(|d| format!(" {d}")).unwrap_or_default())]
    InvalidManifest {
        /// The manifest's digest, when known.
        digest: Option<String>,
        /// What is wrong with it.
        reason: String,
    },
    /// A manifest larger than the configured limit.
    #[error("manifest too large: {size} bytes exceeds the limit of {limit} bytes")]
    ManifestTooLarge {
        /// Its size (or a lower bound of it).
        size: u64,
        /// The configured limit.
        limit: u64,
    },
    /// The directory is not a usable OCI image layout.
    #[error("invalid layout at {}: {reason}", path.display())]
    InvalidLayout {
        /// The offending file or directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Another process holds the writer lock.
    #[error("store is locked by another writer ({holder}); gave up after {:.1}s waiting for {}", waited.as_secs_f64(), path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// Who holds it, as recorded in the lock file.
        holder: String,
        /// How long the store waited.
        waited: Duration,
    },
    /// A delete the store refuses, because something still needs the content.
    #[error("refusing to delete {digest}: {reason}")]
    Refused {
        /// The digest.
        digest: String,
        /// What still needs it.
        reason: String,
    },
    /// A write was attempted on a store opened read-only.
    #[error("store is open read-only")]
    ReadOnly,
    /// The index file was written by a newer version of ocistore.
    #[error(
        "index schema version {found} is newer than this ocistore supports ({supported}); upgrade ocistore"
    )]
    SchemaTooNew {
        /// Version found on disk.
        found: u64,
        /// Highest version this build knows.
        supported: u64,
    },
    /// A file-system operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// The operation, as a verb ("write", "rename", "fsync").
        op: &'static str,
        /// The path it concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The redb index failed.
    #[error("index error: {0}")]
    Index(String),
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error on `path` during `op`.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn manifest(digest: Option<&str>, reason: impl Into<String>) -> Self {
        Error::InvalidManifest {
            digest: digest.map(str::to_owned),
            reason: reason.into(),
        }
    }

    pub(crate) fn layout(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::InvalidLayout {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Index(e.to_string())
            }
        }
    )*};
}
impl From<std::cell::BorrowError> for Error {
    fn from(_: std::cell::BorrowError) -> Self {
        Error::Index("internal: a table was borrowed twice".into())
    }
}

impl From<std::cell::BorrowMutError> for Error {
    fn from(_: std::cell::BorrowMutError) -> Self {
        Error::Index("internal: a table was borrowed twice".into())
    }
}

from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);
