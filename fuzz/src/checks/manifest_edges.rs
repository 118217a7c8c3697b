//! `ocistore::manifest::parse` on arbitrary bytes, under a declared media type chosen by the
//! first byte. It must never panic. A declared manifest type gives a manifest or an error, any
//! other declared type gives no manifest. The edges of a parsed manifest are read again from the
//! document as plain JSON: each child and the subject must be a descriptor the document holds,
//! in the document's order, with its size.

use ocistore::Digest;
use ocistore::manifest::{self, Kind, Parsed};
use serde_json::Value;

/// The declared media types the first byte chooses from (`None` is "not declared").
const DECLARED: [Option<&str>; 10] = [
    None,
    Some(manifest::OCI_MANIFEST),
    Some(manifest::OCI_INDEX),
    Some(manifest::OCI_ARTIFACT_MANIFEST),
    Some(manifest::DOCKER_MANIFEST),
    Some(manifest::DOCKER_MANIFEST_LIST),
    Some(manifest::DOCKER_SCHEMA1),
    Some(manifest::DOCKER_SCHEMA1_SIGNED),
    Some("application/octet-stream"),
    Some(manifest::OCI_EMPTY),
];

/// Checks one input.
pub fn check(data: &[u8]) {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let declared = DECLARED[usize::from(selector) % DECLARED.len()];
    let result = manifest::parse(bytes, declared);
    let again = manifest::parse(bytes, declared);
    assert_eq!(
        result.as_ref().ok(),
        again.as_ref().ok(),
        "parse is not deterministic"
    );
    let strict = declared.and_then(manifest::classify).is_some();
    let parsed = match result {
        Err(e) => {
            assert!(strict, "an error without a declared manifest type: {e}");
            super::assert_one_line(&e);
            return;
        }
        Ok(None) => {
            assert!(
                !strict,
                "declared as {declared:?} but not parsed as a manifest"
            );
            return;
        }
        Ok(Some(p)) => p,
    };
    assert!(
        declared.is_none() || strict,
        "declared as {declared:?} yet parsed as a manifest"
    );
    // Fields the parser skips are not decoded, so a lone surrogate escape (`"\ud800"`) in one of
    // them passes the parser but not a full decode: such documents are only checked not to panic.
    if let Ok(doc) = serde_json::from_slice::<Value>(bytes) {
        check_against(&parsed, &doc, declared);
    }
}

/// The `(digest, size)` of a descriptor object.
fn descriptor(v: &Value) -> (String, Option<u64>) {
    let digest = v["digest"].as_str().expect("a descriptor has a digest");
    (digest.to_owned(), v["size"].as_u64())
}

fn descriptors(v: &Value) -> Vec<(String, Option<u64>)> {
    v.as_array()
        .map(|a| a.iter().map(descriptor).collect())
        .unwrap_or_default()
}

fn non_empty(v: &Value) -> Option<String> {
    v.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
}

fn check_against(p: &Parsed, doc: &Value, declared: Option<&str>) {
    let mut expected = Vec::new();
    match p.kind {
        Kind::OciManifest | Kind::DockerManifest => {
            expected.push(descriptor(&doc["config"]));
            expected.extend(descriptors(&doc["layers"]));
        }
        Kind::OciIndex | Kind::DockerManifestList => expected = descriptors(&doc["manifests"]),
        Kind::ArtifactManifest => expected = descriptors(&doc["blobs"]),
        Kind::DockerSchema1 => {
            for layer in doc["fsLayers"].as_array().into_iter().flatten() {
                let sum = layer["blobSum"].as_str().expect("a layer has a blobSum");
                if !expected.iter().any(|(d, _)| d == sum) {
                    expected.push((sum.to_owned(), None));
                }
            }
        }
    }
    let actual: Vec<(String, Option<u64>)> = p
        .children
        .iter()
        .map(|c| (c.digest.to_string(), c.size))
        .collect();
    assert_eq!(
        actual, expected,
        "children differ from the document's descriptors"
    );
    for c in &p.children {
        assert_eq!(
            Digest::parse(c.digest.as_str()).ok().as_ref(),
            Some(&c.digest)
        );
    }
    let subject = doc.get("subject").filter(|s| !s.is_null()).map(descriptor);
    assert_eq!(
        p.subject.as_ref().map(Digest::to_string),
        subject.map(|(d, _)| d),
        "subject differs from the document's"
    );
    let media_type = non_empty(&doc["mediaType"])
        .or_else(|| declared.map(str::to_owned))
        .unwrap_or_else(|| p.kind.media_type().to_owned());
    assert_eq!(p.media_type, media_type);
    let config_type = match p.kind {
        Kind::OciManifest | Kind::DockerManifest => doc["config"]["mediaType"].as_str(),
        _ => None,
    };
    let artifact_type = non_empty(&doc["artifactType"]).or(config_type.map(str::to_owned));
    assert_eq!(p.artifact_type, artifact_type);
    let annotations = doc["annotations"]
        .as_object()
        .map(|a| {
            a.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        })
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(p.annotations, annotations);
}
