//! ocistore: an embedded, on-disk OCI image-layout store with a transactional index.
//!
//! The directory is a plain OCI image layout that skopeo, umoci and oras can read. Beside it, in
//! `.ocistore/`, a redb index records which manifest holds which blobs and which artifact refers
//! to which subject, so that referrers are answered without reading files, and deletes and
//! garbage collection keep signatures, SBOMs and attestations with the images they describe.
//!
//! ```
//! use ocistore::{Options, PutOptions, ReferrersQuery, Store};
//!
//! let dir = tempfile::tempdir()?;
//! let store = Store::init(dir.path(), &Options::default())?;
//! let config = store.put(&mut &b"{}"[..], &PutOptions::default())?;
//! let manifest = format!(
//!     r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
//!         "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2}},
//!         "layers":[]}}"#,
//!     config.digest
//! );
//! let image = store.put(&mut manifest.as_bytes(), &PutOptions::default())?;
//! store.tag(image.digest.as_str(), "v1")?;
//! assert_eq!(store.resolve("v1")?, image.digest);
//! assert!(store.referrers(&image.digest, &ReferrersQuery::default())?.manifests.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

pub mod bench;
mod catalog;
pub mod demo;
pub mod digest;
mod error;
mod fasthash;
pub mod fault;
pub mod gc;
pub mod import;
mod layout;
mod lock;
pub mod manifest;
pub mod referrers;
pub mod refname;
mod scan;
mod store;
pub mod synth;
pub mod verify;

pub use catalog::{BlobRecord, Counts, ManifestRecord};
pub use digest::{Algorithm, Digest};
pub use error::{Error, Result};
pub use import::ImportReport;
pub use layout::index_json::Entry;
pub use referrers::{ReferrerDescriptor, ReferrersIndex, ReferrersQuery};
pub use refname::{LinkKind, ReferrerTag, validate_tag};
pub use store::{
    Batch, Lease, ListEntry, OpenReport, Options, Put, PutOptions, ReconcileReport, Store,
};
