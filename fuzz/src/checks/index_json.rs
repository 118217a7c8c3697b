//! Arbitrary bytes as a layout's `index.json`, read by `Store::open`. The first byte chooses the
//! route: reconciliation (a store whose index.json another tool rewrote) or adoption (a layout
//! with no index yet). The open must return a store or a one-line error, and after an error the
//! file must be as it was. A store that opened must list tags that resolve to their entries and
//! must open again, with the same listing.
//!
//! The layout holds a small fixed graph, so that inputs can name content the store has: an image
//! (config `{}`, layer `layer`) tagged `v1`, and a signature whose subject is the image.

use std::fs;

use ocistore::manifest::OCI_MANIFEST;
use ocistore::{Digest, Store, validate_tag};

/// The fixed graph. Its digests are stable, so corpus files can name them.
fn fill(store: &Store) -> ocistore::Result<()> {
    let config = super::put(store, b"{}", None)?;
    let layer = super::put(store, b"layer", None)?;
    let image = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":5}}]}}"#
    );
    let size = image.len();
    let image = super::put(store, image.as_bytes(), Some(OCI_MANIFEST))?;
    let signature = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"application/vnd.example.sig","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{config}","size":2}},"layers":[],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{image}","size":{}}}}}"#,
        size
    );
    super::put(store, signature.as_bytes(), Some(OCI_MANIFEST))?;
    store.tag(image.as_str(), "v1")?;
    Ok(())
}

/// Tags with their digests, and untagged digests, as the store lists them.
fn listing(store: &Store) -> Vec<(Option<String>, Digest)> {
    let list = store.list().expect("a store that opened lists its entries");
    for e in &list {
        // An entry whose ref name is outside the tag grammar is kept, and listed, untagged.
        if let Some(tag) = &e.tag {
            assert!(
                validate_tag(tag).is_ok(),
                "listed tag {tag:?} is outside the grammar"
            );
            assert_eq!(
                store.resolve(tag).ok().as_ref(),
                Some(&e.digest),
                "tag {tag}"
            );
        }
    }
    list.into_iter().map(|e| (e.tag, e.digest)).collect()
}

/// Checks one input.
pub fn check(data: &[u8]) {
    let Some((&route, index_json)) = data.split_first() else {
        return;
    };
    let dir = super::scratch();
    let options = super::options();
    {
        let store = Store::init(dir.path(), &options).expect("a new store");
        fill(&store).expect("the fixed graph");
    }
    if route & 1 == 1 {
        fs::remove_dir_all(dir.path().join(".ocistore")).expect("the index removed");
    }
    let path = dir.path().join("index.json");
    fs::write(&path, index_json).expect("index.json written");
    let first = match Store::open(dir.path(), &options) {
        Ok(store) => listing(&store),
        Err(e) => {
            super::assert_one_line(&e);
            let now = fs::read(&path).expect("index.json is still there");
            assert!(now == index_json, "a failed open changed index.json");
            return;
        }
    };
    let written = fs::read(&path).expect("index.json is still there");
    let doc: serde_json::Value = serde_json::from_slice(&written).expect("index.json is JSON");
    assert!(
        doc["manifests"].is_array(),
        "index.json has no manifests array"
    );
    let store = Store::open(dir.path(), &options)
        .unwrap_or_else(|e| panic!("a store that opened does not open again: {e}"));
    assert_eq!(
        listing(&store),
        first,
        "the second open lists other entries"
    );
}
