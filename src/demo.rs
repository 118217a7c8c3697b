//! The demo store: two images, a multi-platform index, a signature and an SBOM on one image, and
//! a signature on that SBOM, with a renderer that prints the graph as a tree.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use serde_json::json;

use crate::digest::Digest;
use crate::error::Result;
use crate::layout::index_json::Entry;
use crate::manifest::{OCI_EMPTY, OCI_INDEX, OCI_MANIFEST};
use crate::referrers::ReferrersQuery;
use crate::store::{Batch, Options, PutOptions, Store};

/// Artifact type of the demo's signatures (cosign's OCI 1.1 type).
pub const SIGNATURE_TYPE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
/// Artifact type of the demo's SBOM.
pub const SBOM_TYPE: &str = "application/spdx+json";
const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// A one-file tar archive (ustar), so that the demo's layers unpack with real tools.
pub fn tar_with_file(name: &str, content: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..107].copy_from_slice(b"0000644");
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    h[124..135].copy_from_slice(format!("{:011o}", content.len()).as_bytes());
    h[136..147].copy_from_slice(b"00000000000");
    h[148..156].copy_from_slice(b"        ");
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(content);
    out.resize(out.len().div_ceil(512) * 512 + 1024, 0);
    out
}

fn put(b: &mut Batch<'_>, bytes: &[u8], media_type: Option<&str>) -> Result<(Digest, u64)> {
    let p = b.put(
        &mut &bytes[..],
        &PutOptions {
            media_type: media_type.map(str::to_owned),
            ..PutOptions::default()
        },
    )?;
    Ok((p.digest, p.size))
}

fn desc(media_type: &str, d: &(Digest, u64)) -> serde_json::Value {
    json!({"mediaType": media_type, "digest": d.0.as_str(), "size": d.1})
}

fn image(b: &mut Batch<'_>, name: &str, arch: &str) -> Result<(Digest, u64)> {
    let layer = tar_with_file(
        &format!("{name}.txt"),
        format!("hello from {name} on {arch}\n").as_bytes(),
    );
    let layer_d = put(b, &layer, None)?;
    let config = json!({
        "architecture": arch, "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_d.0.as_str()]},
    });
    let config_d = put(b, config.to_string().as_bytes(), None)?;
    let m = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": desc(CONFIG, &config_d),
        "layers": [desc(LAYER_TAR, &layer_d)],
    });
    put(b, m.to_string().as_bytes(), Some(OCI_MANIFEST))
}

fn artifact(
    b: &mut Batch<'_>,
    artifact_type: &str,
    payload: &[u8],
    payload_type: &str,
    subject: &(Digest, u64),
    note: &str,
) -> Result<(Digest, u64)> {
    let empty = put(b, b"{}", None)?;
    let payload_d = put(b, payload, None)?;
    let m = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
        "config": desc(OCI_EMPTY, &empty),
        "layers": [desc(payload_type, &payload_d)],
        "subject": desc(OCI_MANIFEST, subject),
        "annotations": {"org.opencontainers.image.description": note},
    });
    let d = put(b, m.to_string().as_bytes(), Some(OCI_MANIFEST))?;
    // Listed untagged in index.json, as oras does, so that other tools see it.
    b.add_entry(&Entry::new(&d.0, OCI_MANIFEST, d.1, None))?;
    Ok(d)
}

/// Builds the demo store in `dir` (which must be empty or missing).
pub fn build(dir: &Path) -> Result<Store> {
    let store = Store::init(dir, &Options::default())?;
    let mut b = store.batch()?;
    let web = image(&mut b, "web", "amd64")?;
    let web_arm = image(&mut b, "web", "arm64")?;
    let db = image(&mut b, "db", "amd64")?;
    let index = json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": web.0.as_str(), "size": web.1,
             "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": OCI_MANIFEST, "digest": web_arm.0.as_str(), "size": web_arm.1,
             "platform": {"architecture": "arm64", "os": "linux"}},
        ],
    });
    let index_d = put(&mut b, index.to_string().as_bytes(), Some(OCI_INDEX))?;
    b.tag(web.0.as_str(), "web:1.0")?;
    b.tag(index_d.0.as_str(), "web:multi")?;
    b.tag(db.0.as_str(), "db:2.0")?;
    let sig_payload = json!({"critical": {"image": {"docker-manifest-digest": web.0.as_str()}}});
    artifact(
        &mut b,
        SIGNATURE_TYPE,
        sig_payload.to_string().as_bytes(),
        "application/vnd.dev.cosign.simplesigning.v1+json",
        &web,
        "signature of web:1.0",
    )?;
    let sbom_doc =
        json!({"spdxVersion": "SPDX-2.3", "name": "web", "packages": [{"name": "busybox"}]});
    let sbom = artifact(
        &mut b,
        SBOM_TYPE,
        sbom_doc.to_string().as_bytes(),
        SBOM_TYPE,
        &web,
        "SBOM of web:1.0",
    )?;
    let sbom_sig = json!({"critical": {"image": {"docker-manifest-digest": sbom.0.as_str()}}});
    artifact(
        &mut b,
        SIGNATURE_TYPE,
        sbom_sig.to_string().as_bytes(),
        "application/vnd.dev.cosign.simplesigning.v1+json",
        &sbom,
        "signature of the SBOM",
    )?;
    b.commit()?;
    Ok(store)
}

/// Renders tags, manifests and referrers as a tree.
pub fn render(store: &Store) -> Result<String> {
    let mut out = String::new();
    let mut tags: Vec<_> = store
        .list()?
        .into_iter()
        .filter(|e| e.tag.is_some())
        .collect();
    tags.sort_by(|a, b| a.tag.cmp(&b.tag));
    for e in tags {
        let _ = writeln!(out, "{}", e.tag.as_deref().unwrap_or_default());
        let mut seen = BTreeSet::new();
        node(store, &e.digest, "  ", "", &mut seen, &mut out)?;
    }
    Ok(out)
}

fn short(d: &Digest) -> String {
    format!(
        "{}:{}",
        d.algorithm_name(),
        &d.encoded()[..12.min(d.encoded().len())]
    )
}

fn node(
    store: &Store,
    d: &Digest,
    indent: &str,
    role: &str,
    seen: &mut BTreeSet<Digest>,
    out: &mut String,
) -> Result<()> {
    let label = match store.manifest_info(d)? {
        Some(m) => {
            let what = m
                .artifact_type
                .clone()
                .filter(|_| m.subject.is_some())
                .unwrap_or(m.media_type.clone());
            let note = m
                .annotations
                .get("org.opencontainers.image.description")
                .map(|n| format!(" \"{n}\""))
                .unwrap_or_default();
            format!("{}{role}{} {what} ({} B){note}", "", short(d), m.size)
        }
        None => match store.blob_info(d)? {
            Some(b) => format!("{role}{} blob ({} B)", short(d), b.size),
            None => format!("{role}{} (absent)", short(d)),
        },
    };
    let _ = writeln!(out, "{indent}{label}");
    if !seen.insert(d.clone()) {
        return Ok(());
    }
    let children = store.children(d)?;
    let refs = store.referrers(d, &ReferrersQuery::default())?;
    let child_indent = format!("{indent}    ");
    for c in &children {
        node(store, c, &child_indent, "├─ ", seen, out)?;
    }
    for r in &refs.manifests {
        let rd = Digest::parse(&r.digest)?;
        node(store, &rd, &child_indent, "◄─ referrer ", seen, out)?;
    }
    Ok(())
}
