//! The OCI image-layout directory: `oci-layout`, `index.json`, `blobs/`, and the store's private
//! `.ocistore/` folder beside them.
//!
//! Rules enforced here:
//! - Paths are built only from validated [`Digest`]s and fixed names.
//! - Blob files are opened with `O_NOFOLLOW`, and the `blobs/` and `blobs/<alg>/` directories are
//!   checked to be real directories, so no symlink leads out of the layout.
//! - Files are replaced, never rewritten in place: write a temporary file, fsync it, rename it over
//!   the target, fsync the directory ([`Layout::replace_file`]).

pub mod index_json;
pub mod ingest;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::fault::{self, Step};

/// The content of a new `oci-layout` file.
pub const OCI_LAYOUT_CONTENT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// Name of the store's private folder.
pub const PRIVATE_DIR: &str = ".ocistore";

/// Paths of one layout.
#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// A layout rooted at `root` (nothing is checked).
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        Layout { root: root.into() }
    }

    /// The layout's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/index.json`.
    pub fn index_json(&self) -> PathBuf {
        self.root.join("index.json")
    }

    /// `<root>/oci-layout`.
    pub fn oci_layout(&self) -> PathBuf {
        self.root.join("oci-layout")
    }

    /// `<root>/blobs`.
    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs")
    }

    /// `<root>/.ocistore`.
    pub fn private_dir(&self) -> PathBuf {
        self.root.join(PRIVATE_DIR)
    }

    /// `<root>/.ocistore/ingest`: partial writes, on the same file system as `blobs/`.
    pub fn ingest_dir(&self) -> PathBuf {
        self.private_dir().join("ingest")
    }

    /// The file of a blob.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join(digest.blob_path())
    }

    /// Whether `oci-layout` exists.
    pub fn exists(&self) -> bool {
        self.oci_layout().exists()
    }

    /// Checks `oci-layout` and the `blobs/` directory.
    pub fn check(&self) -> Result<()> {
        let path = self.oci_layout();
        let bytes = fs::read(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => {
                Error::layout(&self.root, "oci-layout is missing: not an OCI image layout")
            }
            _ => Error::io("read", &path, e),
        })?;
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::layout(&path, format!("not JSON: {e}")))?;
        match v.get("imageLayoutVersion").and_then(|v| v.as_str()) {
            Some("1.0.0") => {}
            Some(other) => {
                return Err(Error::layout(
                    &path,
                    format!("imageLayoutVersion {other:?} is not supported (want \"1.0.0\")"),
                ));
            }
            None => return Err(Error::layout(&path, "imageLayoutVersion is missing")),
        }
        real_dir(&self.blobs_dir())?;
        Ok(())
    }

    /// Creates `oci-layout`, `index.json` and `blobs/` in an empty (or missing) directory.
    pub fn create(&self) -> Result<()> {
        fs::create_dir_all(&self.root).map_err(|e| Error::io("create", &self.root, e))?;
        let foreign: Vec<_> = fs::read_dir(&self.root)
            .map_err(|e| Error::io("read", &self.root, e))?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name() != PRIVATE_DIR)
            .collect();
        if !foreign.is_empty() {
            return Err(Error::layout(
                &self.root,
                "directory is not empty and holds no oci-layout file; refusing to create a store in it",
            ));
        }
        mkdir(&self.blobs_dir())?;
        let index = crate::layout::index_json::IndexJson::default().to_bytes();
        self.replace_file(&self.index_json(), &index)?;
        self.replace_file(&self.oci_layout(), OCI_LAYOUT_CONTENT)?;
        Ok(())
    }

    /// Creates `.ocistore/` and `.ocistore/ingest/`.
    pub fn create_private(&self) -> Result<()> {
        mkdir(&self.private_dir())?;
        mkdir(&self.ingest_dir())?;
        Ok(())
    }

    /// `blobs/<alg>/`, created if missing, checked to be a real directory.
    pub fn alg_dir(&self, digest: &Digest, create: bool) -> Result<PathBuf> {
        let dir = self.blobs_dir().join(digest.algorithm_name());
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => Ok(dir),
            Ok(_) => Err(Error::layout(
                &dir,
                "is not a directory (symlinks are not followed)",
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                real_dir(&self.blobs_dir())?;
                mkdir(&dir)?;
                sync_dir(&self.blobs_dir())?;
                Ok(dir)
            }
            Err(e) => Err(Error::io("stat", &dir, e)),
        }
    }

    /// Opens a blob for reading, refusing symlinks and anything that is not a regular file.
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let dir = self.alg_dir(digest, false).map_err(|e| match e {
            Error::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                Error::NotFound(format!("blob {digest}"))
            }
            e => e,
        })?;
        let path = dir.join(digest.encoded());
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ENOENT) => Error::NotFound(format!("blob {digest}")),
                Some(libc::ELOOP) => {
                    Error::layout(&path, "is a symlink; symlinks in blobs/ are not followed")
                }
                _ => Error::io("open", &path, e),
            })?;
        let meta = file.metadata().map_err(|e| Error::io("stat", &path, e))?;
        if !meta.is_file() {
            return Err(Error::layout(&path, "is not a regular file"));
        }
        Ok(file)
    }

    /// Replaces `target` atomically with `bytes`: temporary file in the same directory, fsync,
    /// rename, fsync of the directory. Readers see the old or the new file, never a mix.
    pub fn replace_file(&self, target: &Path, bytes: &[u8]) -> Result<()> {
        let dir = target.parent().unwrap_or(Path::new("."));
        fault::check(Step::Create, dir)
            .map_err(|e| Error::io("create temporary file in", dir, e))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".ocistore-tmp-")
            .tempfile_in(dir)
            .map_err(|e| Error::io("create temporary file in", dir, e))?;
        fault::check(Step::Write, tmp.path())
            .and_then(|()| tmp.write_all(bytes))
            .map_err(|e| Error::io("write", tmp.path(), e))?;
        fault::check(Step::Fsync, tmp.path())
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| Error::io("fsync", tmp.path(), e))?;
        fault::check(Step::Rename, target).map_err(|e| Error::io("rename into", target, e))?;
        tmp.persist(target)
            .map_err(|e| Error::io("rename into", target, e.error))?;
        sync_dir(dir)
    }
}

/// Checks that `dir` is a directory and not a symlink.
pub(crate) fn real_dir(dir: &Path) -> Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::layout(
            dir,
            "is not a directory (symlinks are not followed)",
        )),
        Err(e) => Err(Error::io("stat", dir, e)),
    }
}

fn mkdir(dir: &Path) -> Result<()> {
    match fault::check(Step::Create, dir).and_then(|()| fs::create_dir(dir)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => real_dir(dir),
        Err(e) => Err(Error::io("create directory", dir, e)),
    }
}

/// Makes the entries of `dir` (renames, creations) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    fault::check(Step::SyncDir, dir)
        .and_then(|()| File::open(dir))
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io("fsync directory", dir, e))
}

/// Removes a file. A file already gone is not an error.
pub(crate) fn unlink(path: &Path) -> io::Result<()> {
    fault::check(Step::Unlink, path)?;
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes a file's name now and leaves the freeing of its blocks to the drop of the returned
/// handle. On a file system that discards blocks as it frees them, freeing is the slow part of
/// an unlink: a caller that holds a lock over the name (the unlink threads hold the digest's
/// stripe) drops the handle after releasing it. The handle is an `O_PATH` one, which opens no
/// content and does not follow a symlink. A file already gone is not an error.
pub(crate) fn unlink_deferred(path: &Path) -> io::Result<Option<File>> {
    fault::check(Step::Unlink, path)?;
    let held = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => Some(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        // Without a handle the unlink frees the blocks itself, as `unlink` does.
        Err(_) => None,
    };
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(held),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_deferred_unlink_removes_the_name_at_once_and_spares_what_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        fs::write(&path, b"old").unwrap();
        let held = unlink_deferred(&path)
            .unwrap()
            .expect("a handle on the removed file");
        assert!(!path.exists(), "the name is gone before the handle drops");
        // The handle holds the removed file itself: no name links to it any more.
        assert_eq!(held.metadata().unwrap().nlink(), 0);
        // A file published under the name meanwhile (a push again) survives the drop.
        fs::write(&path, b"new").unwrap();
        drop(held);
        assert_eq!(fs::read(&path).unwrap(), b"new");
        // A file already gone is not an error.
        fs::remove_file(&path).unwrap();
        assert!(unlink_deferred(&path).unwrap().is_none());
    }

    #[test]
    fn a_deferred_unlink_of_a_symlink_removes_the_link_only() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("outside");
        fs::write(&target, b"keep").unwrap();
        let link = dir.path().join("blob");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        drop(unlink_deferred(&link).unwrap());
        assert!(fs::symlink_metadata(&link).is_err());
        assert_eq!(fs::read(&target).unwrap(), b"keep");
    }
}
