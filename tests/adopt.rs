//! Adoption of a layout written by other tools: no byte changes, and every referrer link the
//! layout holds (subject fields, artifact manifests, cosign tags, fallback indexes, untagged oras
//! entries, unlisted cosign v3 manifests) answered from the index.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use ocistore::{Digest, Options, PutOptions, ReferrerDescriptor, ReferrersQuery, Store};
use serde_json::json;

fn referrers(store: &Store, subject: &Digest, query: &ReferrersQuery) -> Vec<ReferrerDescriptor> {
    let answer = store.referrers(subject, query).unwrap();
    assert_eq!(answer.schema_version, 2);
    assert_eq!(answer.media_type, OCI_INDEX);
    sorted(answer.manifests)
}

fn filtered(
    store: &Store,
    subject: &Digest,
    artifact_type: &str,
    transitive: bool,
) -> (Vec<ReferrerDescriptor>, Vec<&'static str>) {
    let q = ReferrersQuery {
        artifact_type: Some(artifact_type.to_owned()),
        transitive,
    };
    let answer = store.referrers(subject, &q).unwrap();
    (sorted(answer.manifests), answer.filters_applied)
}

fn digests(v: &[ReferrerDescriptor]) -> BTreeSet<String> {
    v.iter().map(|r| r.digest.clone()).collect()
}

fn set<'a>(descs: impl IntoIterator<Item = &'a Desc>) -> BTreeSet<String> {
    descs.into_iter().map(|d| d.digest.clone()).collect()
}

fn children(store: &Store, d: &Desc) -> BTreeSet<String> {
    store
        .children(&d.digest())
        .unwrap()
        .iter()
        .map(|c| c.to_string())
        .collect()
}

/// Every subject the layout has, plus a few that have no referrers.
fn subjects(g: &Generated) -> Vec<Digest> {
    let mut v: Vec<Digest> = g.manifests().iter().map(|d| d.digest()).collect();
    v.push(g.dangling_subject.clone());
    v.push(g.image_layer.digest());
    v.push(Digest::sha256(b"nothing refers to this"));
    v
}

#[test]
fn init_adopts_without_changing_a_byte() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let g = generate(root);
    let before = snapshot(root);
    assert_eq!(
        before.len() as u64,
        g.blob_files + 2,
        "oci-layout, index.json and the blobs"
    );

    let store = Store::init(root, &Options::default()).unwrap();
    let report = store.open_report().clone();
    assert!(report.created_index);
    assert!(!report.recovered);
    assert_eq!(report.indexed_blobs, g.blob_files);
    assert!(
        report.warnings.is_empty(),
        "warnings: {:?}",
        report.warnings
    );
    assert_eq!(snapshot(root), before, "adoption changed the layout");

    let stats = store.stats().unwrap();
    assert_eq!(stats.blobs, g.blob_files);
    assert_eq!(stats.manifests, g.manifest_files);
    assert_eq!(stats.tags, g.tags.len() as u64);
    assert_eq!(stats.untagged, g.untagged.len() as u64);

    // Reading everything changes nothing either.
    for s in subjects(&g) {
        referrers(&store, &s, &ReferrersQuery::default());
        referrers(
            &store,
            &s,
            &ReferrersQuery {
                transitive: true,
                ..ReferrersQuery::default()
            },
        );
    }
    store.list().unwrap();
    drop(store);
    assert_eq!(snapshot(root), before, "reads or close changed the layout");

    // A second open does not re-index and does not write either.
    let store = Store::open(root, &Options::default()).unwrap();
    let report = store.open_report();
    assert!(!report.created_index);
    assert!(!report.recovered);
    assert_eq!(report.indexed_blobs, 0);
    assert!(
        report.reconciled.is_none(),
        "unexpected reconcile: {:?}",
        report.reconciled
    );
    assert_eq!(store.stats().unwrap(), stats);
    drop(store);
    assert_eq!(snapshot(root), before, "the second open changed the layout");
}

#[test]
fn open_adopts_too() {
    let dir = tempfile::tempdir().unwrap();
    let g = generate(dir.path());
    let before = snapshot(dir.path());
    let store = Store::open(dir.path(), &Options::default()).unwrap();
    assert!(store.open_report().created_index);
    assert_eq!(store.stats().unwrap().blobs, g.blob_files);
    assert_eq!(
        referrers(&store, &g.image.digest(), &ReferrersQuery::default()),
        g.expected_referrers(&g.image.digest)
    );
    drop(store);
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn referrers_of_every_subject() {
    let dir = tempfile::tempdir().unwrap();
    let g = generate(dir.path());
    let store = Store::init(dir.path(), &Options::default()).unwrap();

    // Image A: subject-field referrers (oras entries, the artifact manifest, the unlisted cosign
    // v3 manifest, an index), and the cosign legacy signature linked by its tag alone.
    let got = referrers(&store, &g.image.digest(), &ReferrersQuery::default());
    assert_eq!(
        digests(&got),
        set([
            &g.sbom,
            &g.artifact,
            &g.config_typed,
            &g.cosign_sig,
            &g.cosign_v3,
            &g.index_referrer
        ])
    );
    assert_eq!(got, g.expected_referrers(&g.image.digest));

    // The fallback index's entries (no subject field) are referrers of its subject; the index
    // itself is not.
    let got = referrers(&store, &g.nested_amd64.digest(), &ReferrersQuery::default());
    assert_eq!(digests(&got), set([&g.fallback_sbom, &g.fallback_sig]));
    assert_eq!(got, g.expected_referrers(&g.nested_amd64.digest));

    // A signature on the SBOM is a referrer of the SBOM.
    let got = referrers(&store, &g.sbom.digest(), &ReferrersQuery::default());
    assert_eq!(got, vec![g.sbom_signature.referrer()]);

    // A Docker manifest list can be a subject.
    let got = referrers(&store, &g.docker_list.digest(), &ReferrersQuery::default());
    assert_eq!(got, vec![g.docker_list_sig.referrer()]);

    // A referrer whose subject the layout lacks is still listed for that subject.
    let got = referrers(&store, &g.dangling_subject, &ReferrersQuery::default());
    assert_eq!(got, vec![g.dangling.referrer()]);

    // And everything else has none.
    for s in subjects(&g) {
        let got = referrers(&store, &s, &ReferrersQuery::default());
        assert_eq!(got, g.expected_referrers(s.as_str()), "referrers of {s}");
    }
}

#[test]
fn referrer_descriptors_follow_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    let g = generate(dir.path());
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    let got: BTreeMap<String, ReferrerDescriptor> =
        referrers(&store, &g.image.digest(), &ReferrersQuery::default())
            .into_iter()
            .map(|r| (r.digest.clone(), r))
            .collect();

    // artifactType, else the config's media type.
    let sbom = &got[&g.sbom.digest];
    assert_eq!(sbom.artifact_type.as_deref(), Some(SBOM_TYPE));
    assert_eq!(sbom.media_type, OCI_MANIFEST);
    assert_eq!(sbom.size, g.sbom.size);
    assert_eq!(sbom.annotations["org.example.kind"], "sbom");
    assert_eq!(
        sbom.annotations["org.opencontainers.image.created"],
        "2024-01-02T03:04:05Z"
    );
    let typed = &got[&g.config_typed.digest];
    assert_eq!(typed.artifact_type.as_deref(), Some(EXAMPLE_CONFIG_TYPE));
    let cosign = &got[&g.cosign_sig.digest];
    assert_eq!(cosign.artifact_type.as_deref(), Some(OCI_CONFIG));
    assert_eq!(cosign.annotations["org.example.cosign"], "legacy");

    // The artifact manifest keeps its own media type.
    let artifact = &got[&g.artifact.digest];
    assert_eq!(artifact.media_type, OCI_ARTIFACT_MANIFEST);
    assert_eq!(artifact.artifact_type.as_deref(), Some(SBOM_TYPE));
    assert_eq!(artifact.annotations["org.example.tool"], "oras 0.16");

    // An index without artifactType: omitted (and not serialized).
    let index = &got[&g.index_referrer.digest];
    assert_eq!(index.media_type, OCI_INDEX);
    assert_eq!(index.artifact_type, None);
    let body = serde_json::to_value(index).unwrap();
    assert!(body.get("artifactType").is_none(), "{body}");

    // The serialized response is an OCI index of descriptors.
    let answer = store
        .referrers(&g.sbom.digest(), &ReferrersQuery::default())
        .unwrap();
    let body = serde_json::to_value(&answer).unwrap();
    assert_eq!(
        body,
        json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{
                "mediaType": OCI_MANIFEST,
                "digest": g.sbom_signature.digest,
                "size": g.sbom_signature.size,
                "artifactType": SIGNATURE_TYPE,
                "annotations": { "org.example.signed": "sbom" },
            }],
        })
    );

    // What manifest_info records matches.
    for d in g.manifests() {
        let info = store
            .manifest_info(&d.digest())
            .unwrap()
            .unwrap_or_else(|| panic!("{} not a manifest", d.digest));
        assert_eq!(info.size, d.size, "{}", d.digest);
        assert_eq!(info.media_type, d.media_type, "{}", d.digest);
        if d.artifact_type.is_some() || !d.annotations.is_empty() {
            assert_eq!(info.artifact_type, d.artifact_type, "{}", d.digest);
            assert_eq!(info.annotations, d.annotations, "{}", d.digest);
        }
    }
    assert_eq!(
        store
            .manifest_info(&g.sbom.digest())
            .unwrap()
            .unwrap()
            .subject
            .as_deref(),
        Some(g.image.digest.as_str())
    );
    // The cosign signature and the fallback entries have no subject field.
    for d in [&g.cosign_sig, &g.fallback_sbom, &g.fallback_sig] {
        assert_eq!(
            store.manifest_info(&d.digest()).unwrap().unwrap().subject,
            None
        );
    }
}

#[test]
fn artifact_type_filter() {
    let dir = tempfile::tempdir().unwrap();
    let g = generate(dir.path());
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    let image = g.image.digest();

    let (got, applied) = filtered(&store, &image, SBOM_TYPE, false);
    assert_eq!(digests(&got), set([&g.sbom, &g.artifact]));
    assert_eq!(applied, vec!["artifactType"]);
    assert_eq!(got, sorted(vec![g.sbom.referrer(), g.artifact.referrer()]));

    // The filter matches the artifact type chosen by the spec rule (config media type).
    let (got, _) = filtered(&store, &image, EXAMPLE_CONFIG_TYPE, false);
    assert_eq!(got, vec![g.config_typed.referrer()]);
    let (got, _) = filtered(&store, &image, OCI_CONFIG, false);
    assert_eq!(got, vec![g.cosign_sig.referrer()]);
    let (got, _) = filtered(&store, &image, SIGSTORE_BUNDLE_TYPE, false);
    assert_eq!(got, vec![g.cosign_v3.referrer()]);

    // Nothing matches: empty, and the filter is still reported.
    let (got, applied) = filtered(&store, &image, "application/vnd.example.none", false);
    assert!(got.is_empty());
    assert_eq!(applied, vec!["artifactType"]);

    // Fallback entries are filtered too.
    let (got, _) = filtered(&store, &g.nested_amd64.digest(), NOTARY_TYPE, false);
    assert_eq!(got, vec![g.fallback_sig.referrer()]);

    // Without a filter nothing is reported as applied.
    let answer = store.referrers(&image, &ReferrersQuery::default()).unwrap();
    assert!(answer.filters_applied.is_empty());

    // Transitive and filtered: only the signature on the SBOM is a signature.
    let (got, applied) = filtered(&store, &image, SIGNATURE_TYPE, true);
    assert_eq!(got, vec![g.sbom_signature.referrer()]);
    assert_eq!(applied, vec!["artifactType"]);
    let (got, _) = filtered(&store, &image, SIGNATURE_TYPE, false);
    assert!(got.is_empty());
}

#[test]
fn transitive_includes_the_signature_on_the_sbom() {
    let dir = tempfile::tempdir().unwrap();
    let g = generate(dir.path());
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    let q = ReferrersQuery {
        transitive: true,
        ..ReferrersQuery::default()
    };
    let got = referrers(&store, &g.image.digest(), &q);
    let mut want = g.expected_referrers(&g.image.digest);
    want.push(g.sbom_signature.referrer());
    assert_eq!(got, sorted(want));
    // Each once.
    assert_eq!(digests(&got).len(), got.len());

    // Subjects without referrers of referrers answer as in the direct mode.
    for d in [&g.nested_amd64, &g.docker_list, &g.sbom, &g.nested_arm64] {
        assert_eq!(
            referrers(&store, &d.digest(), &q),
            g.expected_referrers(&d.digest),
            "{}",
            d.digest
        );
    }
}

#[test]
fn children_of_indexes_and_manifests() {
    let dir = tempfile::tempdir().unwrap();
    let g = generate(dir.path());
    let store = Store::init(dir.path(), &Options::default()).unwrap();

    assert_eq!(children(&store, &g.nested_outer), set([&g.nested_inner]));
    assert_eq!(
        children(&store, &g.nested_inner),
        set([&g.nested_amd64, &g.nested_arm64, &g.bare])
    );
    assert_eq!(
        children(&store, &g.nested_amd64),
        set([&g.nested_config, &g.nested_layer])
    );
    assert_eq!(
        children(&store, &g.bare),
        set([&g.bare_config, &g.nested_layer])
    );
    assert_eq!(
        children(&store, &g.docker_list),
        set([&g.docker_amd64, &g.docker_arm64])
    );
    assert_eq!(
        children(&store, &g.docker_amd64),
        set([&g.docker_config, &g.docker_layer, &g.foreign_layer])
    );
    assert_eq!(
        children(&store, &g.image),
        set([&g.image_config, &g.image_layer])
    );
    assert_eq!(children(&store, &g.artifact), set([&g.artifact_blob]));
    assert_eq!(
        children(&store, &g.fallback_index),
        set([&g.fallback_sbom, &g.fallback_sig])
    );
    assert_eq!(children(&store, &g.sbom), set([&g.empty, &g.sbom_layer]));
    // A subject is not a child.
    assert!(!children(&store, &g.sbom).contains(&g.image.digest));
    assert!(children(&store, &g.index_referrer).is_empty());
    assert!(children(&store, &g.image_layer).is_empty());

    // Kinds and media types.
    let info = |d: &Desc| store.manifest_info(&d.digest()).unwrap().unwrap();
    assert_eq!(info(&g.docker_amd64).media_type, DOCKER_MANIFEST);
    assert_eq!(
        info(&g.docker_amd64).artifact_type.as_deref(),
        Some(DOCKER_CONFIG)
    );
    assert_eq!(info(&g.docker_list).media_type, DOCKER_MANIFEST_LIST);
    assert_eq!(info(&g.bare).media_type, OCI_MANIFEST);
    assert_eq!(info(&g.nested_inner).media_type, OCI_INDEX);

    // The foreign layer is absent: no blob record, and no error.
    assert!(
        store
            .blob_info(&g.foreign_layer.digest())
            .unwrap()
            .is_none()
    );
    let layer = store.blob_info(&g.docker_layer.digest()).unwrap().unwrap();
    assert_eq!(layer.size, g.docker_layer.size);
    assert!(!layer.manifest);
    assert!(layer.verified);
    assert!(
        store
            .blob_info(&g.docker_amd64.digest())
            .unwrap()
            .unwrap()
            .manifest
    );
    // Configs are not manifests.
    assert!(
        store
            .manifest_info(&g.docker_config.digest())
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .manifest_info(&g.image_config.digest())
            .unwrap()
            .is_none()
    );
}

#[test]
fn tags_resolve_and_list_shows_entries() {
    let dir = tempfile::tempdir().unwrap();
    let g = generate(dir.path());
    let store = Store::init(dir.path(), &Options::default()).unwrap();

    for (tag, digest) in &g.tags {
        assert_eq!(store.resolve(tag).unwrap().as_str(), digest, "tag {tag}");
    }
    assert_eq!(store.resolve("v1").unwrap(), g.image.digest());
    assert_eq!(
        store.resolve(&g.cosign_sig_tag).unwrap(),
        g.cosign_sig.digest()
    );
    assert_eq!(
        store.resolve(&g.fallback_tag).unwrap(),
        g.fallback_index.digest()
    );
    assert_eq!(
        store.resolve(&g.docker_list.digest).unwrap(),
        g.docker_list.digest()
    );
    assert!(store.resolve("no-such-tag").is_err());
    assert_eq!(
        store.tags_of(&g.image.digest()).unwrap(),
        vec!["v1".to_owned()]
    );

    let list = store.list().unwrap();
    let tagged: BTreeMap<String, String> = list
        .iter()
        .filter_map(|e| e.tag.clone().map(|t| (t, e.digest.to_string())))
        .collect();
    assert_eq!(tagged, g.tags);
    let untagged: BTreeSet<String> = list
        .iter()
        .filter(|e| e.tag.is_none())
        .map(|e| e.digest.to_string())
        .collect();
    assert_eq!(untagged, g.untagged.iter().cloned().collect());
    assert_eq!(list.len(), g.tags.len() + g.untagged.len());
    let by_digest: BTreeMap<String, &ocistore::ListEntry> =
        list.iter().map(|e| (e.digest.to_string(), e)).collect();
    for d in g.manifests() {
        if let Some(e) = by_digest.get(&d.digest) {
            assert_eq!(
                e.media_type.as_deref(),
                Some(d.media_type.as_str()),
                "{}",
                d.digest
            );
            assert_eq!(e.size, Some(d.size), "{}", d.digest);
        }
    }
    // Tags first, by name.
    let tags: Vec<&String> = list.iter().map_while(|e| e.tag.as_ref()).collect();
    assert_eq!(tags.len(), g.tags.len());
    assert!(tags.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn read_only_open_beside_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let g = generate(dir.path());
    let before = snapshot(dir.path());

    // No index yet: read-only cannot adopt.
    assert!(Store::open_read_only(dir.path(), &Options::default()).is_err());

    let writer = Store::init(dir.path(), &Options::default()).unwrap();
    let reader = Store::open_read_only(dir.path(), &Options::default()).unwrap();
    for s in subjects(&g) {
        for transitive in [false, true] {
            let q = ReferrersQuery {
                transitive,
                ..ReferrersQuery::default()
            };
            assert_eq!(
                referrers(&reader, &s, &q),
                referrers(&writer, &s, &q),
                "referrers of {s}"
            );
        }
        assert_eq!(
            referrers(&reader, &s, &ReferrersQuery::default()),
            g.expected_referrers(s.as_str())
        );
    }
    assert_eq!(reader.stats().unwrap(), writer.stats().unwrap());
    assert_eq!(reader.list().unwrap(), writer.list().unwrap());
    assert_eq!(reader.resolve("v1").unwrap(), g.image.digest());

    // Writes are refused through the read-only handle.
    assert!(reader.put(&mut &b"x"[..], &PutOptions::default()).is_err());
    assert!(reader.tag("v1", "again").is_err());
    drop(reader);
    drop(writer);
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn read_only_sees_the_writers_commits() {
    let dir = tempfile::tempdir().unwrap();
    let g = generate(dir.path());
    let writer = Store::init(dir.path(), &Options::default()).unwrap();
    let reader = Store::open_read_only(dir.path(), &Options::default()).unwrap();

    let bytes = manifest_json(
        g.empty.json(),
        vec![g.empty.json()],
        Some(g.image.json()),
        Some("application/vnd.example.late"),
        &[],
    );
    let put = writer
        .put(&mut bytes.as_slice(), &PutOptions::default())
        .unwrap();
    let got = referrers(&reader, &g.image.digest(), &ReferrersQuery::default());
    assert!(
        digests(&got).contains(put.digest.as_str()),
        "the reader does not see the new referrer"
    );
    assert_eq!(got.len(), g.expected_referrers(&g.image.digest).len() + 1);
}

#[test]
fn a_second_tool_link_to_the_same_referrer_lists_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let g = generate(dir.path());
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    // The SBOM already names the image as subject; a cosign .att tag now links it too.
    let tag = format!("sha256-{}.att", g.image.hex());
    store.tag(&g.sbom.digest, &tag).unwrap();
    let got = referrers(&store, &g.image.digest(), &ReferrersQuery::default());
    assert_eq!(got, g.expected_referrers(&g.image.digest));
    store.untag(&tag).unwrap();
    assert_eq!(
        referrers(&store, &g.image.digest(), &ReferrersQuery::default()),
        g.expected_referrers(&g.image.digest)
    );
    // Removing the cosign tag removes that link, not the subject-field ones.
    store.untag(&g.cosign_sig_tag).unwrap();
    let mut want = g.expected_referrers(&g.image.digest);
    want.retain(|r| r.digest != g.cosign_sig.digest);
    assert_eq!(
        referrers(&store, &g.image.digest(), &ReferrersQuery::default()),
        want
    );
}

#[test]
fn referrer_put_before_its_subject() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), &Options::default()).unwrap();

    // The subject's bytes are known, but it is not pushed yet.
    let config = store.put(&mut &b"{}"[..], &PutOptions::default()).unwrap();
    let config_desc = descriptor(OCI_EMPTY, config.digest.as_str(), config.size);
    let layer_bytes = b"\x1f\x8b\x08\x00late subject layer";
    let layer_desc = descriptor(
        OCI_LAYER_GZIP,
        &sha256_digest(layer_bytes),
        layer_bytes.len() as u64,
    );
    let subject_bytes = manifest_json(
        descriptor(OCI_CONFIG, config.digest.as_str(), config.size),
        vec![layer_desc],
        None,
        None,
        &[],
    );
    let subject = Digest::parse(&sha256_digest(&subject_bytes)).unwrap();
    let subject_desc = descriptor(OCI_MANIFEST, subject.as_str(), subject_bytes.len() as u64);
    assert!(store.blob_info(&subject).unwrap().is_none());

    let ann = [("org.example.order", "before")];
    let referrer_bytes = manifest_json(
        config_desc,
        vec![],
        Some(subject_desc),
        Some(SIGNATURE_TYPE),
        &ann,
    );
    let referrer = store
        .put(
            &mut referrer_bytes.as_slice(),
            &PutOptions {
                media_type: Some(OCI_MANIFEST.to_owned()),
                ..PutOptions::default()
            },
        )
        .unwrap();
    assert!(!referrer.existed);
    assert_eq!(referrer.media_type.as_deref(), Some(OCI_MANIFEST));
    let want = vec![ReferrerDescriptor {
        media_type: OCI_MANIFEST.to_owned(),
        digest: referrer.digest.to_string(),
        size: referrer_bytes.len() as u64,
        artifact_type: Some(SIGNATURE_TYPE.to_owned()),
        annotations: ann
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }];
    assert_eq!(
        referrers(&store, &subject, &ReferrersQuery::default()),
        want
    );

    // Now the subject arrives (layer first, then the manifest, with no declared type).
    store
        .put(&mut &layer_bytes[..], &PutOptions::default())
        .unwrap();
    let put = store
        .put(&mut subject_bytes.as_slice(), &PutOptions::default())
        .unwrap();
    assert_eq!(put.digest, subject);
    assert_eq!(put.media_type.as_deref(), Some(OCI_MANIFEST));
    store.tag(subject.as_str(), "late").unwrap();
    assert_eq!(
        referrers(&store, &subject, &ReferrersQuery::default()),
        want
    );

    // And after reopening.
    drop(store);
    let store = Store::open(dir.path(), &Options::default()).unwrap();
    assert_eq!(
        referrers(&store, &subject, &ReferrersQuery::default()),
        want
    );
    drop(store);
    let store = Store::open_read_only(dir.path(), &Options::default()).unwrap();
    assert_eq!(
        referrers(&store, &subject, &ReferrersQuery::default()),
        want
    );
}

#[test]
fn referrer_put_before_its_subject_in_an_adopted_layout() {
    let dir = tempfile::tempdir().unwrap();
    let g = generate(dir.path());
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    // The dangling referrer of the layout is found by its subject; pushing the subject keeps it.
    let want = g.expected_referrers(g.dangling_subject.as_str());
    assert_eq!(
        referrers(&store, &g.dangling_subject, &ReferrersQuery::default()),
        want
    );
    let subject_bytes = b"{\"schemaVersion\":2,\"note\":\"never written\"}";
    let put = store
        .put(&mut &subject_bytes[..], &PutOptions::default())
        .unwrap();
    assert_eq!(put.digest, g.dangling_subject);
    assert_eq!(
        referrers(&store, &g.dangling_subject, &ReferrersQuery::default()),
        want
    );
}

#[test]
fn writes_after_adoption_keep_every_foreign_entry() {
    let dir = tempfile::tempdir().unwrap();
    let g = generate(dir.path());
    let before = snapshot(dir.path());
    let read_index = || -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap()
    };
    let old = read_index();
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    store.tag("v1", "latest").unwrap();

    // Blobs and oci-layout are untouched; index.json gained one entry and lost nothing.
    let after = snapshot(dir.path());
    for (path, bytes) in &before {
        if path != std::path::Path::new("index.json") {
            assert_eq!(after.get(path), Some(bytes), "{}", path.display());
        }
    }
    assert_eq!(after.len(), before.len(), "files added outside .ocistore/");
    let new = read_index();
    assert_eq!(
        new["annotations"], old["annotations"],
        "top-level fields of index.json kept"
    );
    let old_entries = old["manifests"].as_array().unwrap();
    let new_entries = new["manifests"].as_array().unwrap();
    for e in old_entries {
        assert!(new_entries.contains(e), "entry lost or changed: {e}");
    }
    assert_eq!(new_entries.len(), old_entries.len() + 1);
    assert!(new_entries.contains(&entry(&g.image, Some("latest"))));

    // Everything still answers the same, also after reopening.
    drop(store);
    let store = Store::open(dir.path(), &Options::default()).unwrap();
    assert!(!store.open_report().created_index);
    assert!(
        store.open_report().reconciled.is_none(),
        "{:?}",
        store.open_report().reconciled
    );
    for s in subjects(&g) {
        assert_eq!(
            referrers(&store, &s, &ReferrersQuery::default()),
            g.expected_referrers(s.as_str()),
            "{s}"
        );
    }
    assert_eq!(store.resolve("latest").unwrap(), g.image.digest());
}

#[test]
fn an_entry_of_unknown_media_type_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let g = generate(dir.path());
    // Another tool lists a non-manifest blob under a media type the store does not know.
    let thing = Desc::write(
        dir.path(),
        "application/vnd.example.thing",
        b"not a manifest",
    );
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap();
    doc["manifests"]
        .as_array_mut()
        .unwrap()
        .push(entry(&thing, None));
    std::fs::write(
        dir.path().join("index.json"),
        serde_json::to_vec(&doc).unwrap(),
    )
    .unwrap();
    let before = snapshot(dir.path());

    let store = Store::init(dir.path(), &Options::default()).unwrap();
    assert_eq!(snapshot(dir.path()), before);
    assert_eq!(store.stats().unwrap().untagged, g.untagged.len() as u64 + 1);
    assert!(
        store
            .list()
            .unwrap()
            .iter()
            .any(|e| e.digest == thing.digest() && e.tag.is_none())
    );
    assert!(store.manifest_info(&thing.digest()).unwrap().is_none());
    assert_eq!(
        store.blob_info(&thing.digest()).unwrap().unwrap().size,
        thing.size
    );
    assert_eq!(
        referrers(&store, &g.image.digest(), &ReferrersQuery::default()),
        g.expected_referrers(&g.image.digest)
    );
}
