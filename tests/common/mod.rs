//! Test layout generator: writes OCI image layouts byte by byte with `std::fs`, without any of the
//! store's own writers, the way other tools (skopeo, umoci, oras, regclient, cosign) leave them.
//!
//! [`generate`] builds one layout that holds every shape the store must adopt, and returns the
//! digests of what it wrote ([`Generated`]) so that tests can assert exact expectations.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use ocistore::{Digest, ReferrerDescriptor};
use serde_json::{Map, Value, json};
use sha2::Digest as _;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_ARTIFACT_MANIFEST: &str = "application/vnd.oci.artifact.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_FOREIGN_LAYER: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

pub const SBOM_TYPE: &str = "application/vnd.example.sbom";
pub const SIGNATURE_TYPE: &str = "application/vnd.example.signature";
pub const NOTARY_TYPE: &str = "application/vnd.cncf.notary.signature";
pub const SIGSTORE_BUNDLE_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
pub const EXAMPLE_CONFIG_TYPE: &str = "application/vnd.example.config.v1+json";
pub const COSIGN_SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

/// Writes `<root>/oci-layout` (with a space the store's own writer would not put there) and
/// creates `blobs/sha256/`.
pub fn write_skeleton(root: &Path) {
    fs::create_dir_all(root.join("blobs").join("sha256")).unwrap();
    fs::write(
        root.join("oci-layout"),
        b"{\"imageLayoutVersion\": \"1.0.0\"}",
    )
    .unwrap();
}

/// Writes `bytes` as `blobs/sha256/<hex>` (creating the directories) and returns the digest
/// string and size.
pub fn write_blob(root: &Path, bytes: &[u8]) -> (String, u64) {
    let hex = sha256_hex(bytes);
    let dir = root.join("blobs").join("sha256");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(&hex), bytes).unwrap();
    (format!("sha256:{hex}"), bytes.len() as u64)
}

/// A descriptor object.
pub fn descriptor(media_type: &str, digest: &str, size: u64) -> Value {
    json!({ "mediaType": media_type, "digest": digest, "size": size })
}

/// An annotations object from pairs.
pub fn annotations(pairs: &[(&str, &str)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
        .collect()
}

fn pairs_map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The bytes of an OCI image manifest with a top-level `mediaType`.
pub fn manifest_json(
    config: Value,
    layers: Vec<Value>,
    subject: Option<Value>,
    artifact_type: Option<&str>,
    annotations: &[(&str, &str)],
) -> Vec<u8> {
    let mut doc = manifest_object(config, layers, subject, artifact_type, annotations);
    doc.insert("mediaType".into(), OCI_MANIFEST.into());
    serde_json::to_vec(&Value::Object(doc)).unwrap()
}

/// The fields of an image manifest, without `mediaType`.
pub fn manifest_object(
    config: Value,
    layers: Vec<Value>,
    subject: Option<Value>,
    artifact_type: Option<&str>,
    ann: &[(&str, &str)],
) -> Map<String, Value> {
    let mut doc = Map::new();
    doc.insert("schemaVersion".into(), 2.into());
    if let Some(t) = artifact_type {
        doc.insert("artifactType".into(), t.into());
    }
    doc.insert("config".into(), config);
    doc.insert("layers".into(), Value::Array(layers));
    if let Some(s) = subject {
        doc.insert("subject".into(), s);
    }
    if !ann.is_empty() {
        doc.insert("annotations".into(), Value::Object(annotations(ann)));
    }
    doc
}

/// The bytes of an image index of `media_type` (OCI index or Docker manifest list).
pub fn index_json(
    media_type: &str,
    manifests: Vec<Value>,
    subject: Option<Value>,
    artifact_type: Option<&str>,
    ann: &[(&str, &str)],
) -> Vec<u8> {
    let mut doc = Map::new();
    doc.insert("schemaVersion".into(), 2.into());
    doc.insert("mediaType".into(), media_type.into());
    if let Some(t) = artifact_type {
        doc.insert("artifactType".into(), t.into());
    }
    doc.insert("manifests".into(), Value::Array(manifests));
    if let Some(s) = subject {
        doc.insert("subject".into(), s);
    }
    if !ann.is_empty() {
        doc.insert("annotations".into(), Value::Object(annotations(ann)));
    }
    serde_json::to_vec_pretty(&Value::Object(doc)).unwrap()
}

/// An index.json entry, tagged with `org.opencontainers.image.ref.name` when `tag` is given.
pub fn entry(d: &Desc, tag: Option<&str>) -> Value {
    let mut e = d.json();
    if let Some(t) = tag {
        e["annotations"] = json!({ REF_NAME: t });
    }
    e
}

/// Writes `<root>/index.json` with `entries` (and a top-level annotation the store must keep).
pub fn write_index_json(root: &Path, entries: Vec<Value>) {
    let doc = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": entries,
        "annotations": { "org.example.generator": "tests/common" },
    });
    fs::write(
        root.join("index.json"),
        serde_json::to_vec_pretty(&doc).unwrap(),
    )
    .unwrap();
}

/// A blob the generator wrote (or, for a foreign layer, only described).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desc {
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// The media type a descriptor of it carries.
    pub media_type: String,
    /// For manifests: the artifact type a referrers response must show (spec rule applied).
    pub artifact_type: Option<String>,
    /// For manifests: the top-level annotations.
    pub annotations: BTreeMap<String, String>,
}

impl Desc {
    fn new(media_type: &str, (digest, size): (String, u64)) -> Desc {
        Desc {
            digest,
            size,
            media_type: media_type.to_owned(),
            artifact_type: None,
            annotations: BTreeMap::new(),
        }
    }

    /// Writes `bytes` as a blob and describes it.
    pub fn write(root: &Path, media_type: &str, bytes: &[u8]) -> Desc {
        Desc::new(media_type, write_blob(root, bytes))
    }

    /// Describes `bytes` without writing them (a blob the layout lacks).
    pub fn absent(media_type: &str, bytes: &[u8]) -> Desc {
        Desc::new(media_type, (sha256_digest(bytes), bytes.len() as u64))
    }

    fn with_referrer_info(mut self, artifact_type: Option<&str>, ann: &[(&str, &str)]) -> Desc {
        self.artifact_type = artifact_type.map(str::to_owned);
        self.annotations = pairs_map(ann);
        self
    }

    /// The validated digest.
    pub fn digest(&self) -> Digest {
        Digest::parse(&self.digest).unwrap()
    }

    /// The hex part of the digest.
    pub fn hex(&self) -> &str {
        self.digest.strip_prefix("sha256:").unwrap()
    }

    /// A plain descriptor of it.
    pub fn json(&self) -> Value {
        descriptor(&self.media_type, &self.digest, self.size)
    }

    /// The descriptor a referrers response must hold for it.
    pub fn referrer(&self) -> ReferrerDescriptor {
        ReferrerDescriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.size,
            artifact_type: self.artifact_type.clone(),
            annotations: self.annotations.clone(),
        }
    }
}

/// Everything [`generate`] wrote, by role.
#[derive(Clone, Debug)]
pub struct Generated {
    // Image A, tagged "v1": the subject of most referrers.
    pub image: Desc,
    pub image_config: Desc,
    pub image_layer: Desc,
    /// The empty config `{}` (shared by the artifacts).
    pub empty: Desc,

    // Nested indexes: index.json "nested" -> outer index -> inner index -> manifests.
    pub nested_outer: Desc,
    pub nested_inner: Desc,
    pub nested_amd64: Desc,
    pub nested_arm64: Desc,
    pub nested_config: Desc,
    pub nested_layer: Desc,
    /// A manifest without a top-level `mediaType` (umoci/skopeo style), tagged "bare" and also
    /// listed by the inner index.
    pub bare: Desc,
    pub bare_config: Desc,

    // Docker: manifest list "docker" -> two Docker v2 manifests.
    pub docker_list: Desc,
    pub docker_amd64: Desc,
    pub docker_arm64: Desc,
    pub docker_config: Desc,
    pub docker_layer: Desc,
    /// A foreign layer with `urls`: its blob is absent from the layout.
    pub foreign_layer: Desc,

    // Referrers of the image.
    /// oras style: subject, artifactType, annotations, untagged index.json entry.
    pub sbom: Desc,
    pub sbom_layer: Desc,
    /// A signature whose subject is `sbom` (listed nowhere): for the transitive mode.
    pub sbom_signature: Desc,
    /// The removed artifact manifest type, untagged index.json entry.
    pub artifact: Desc,
    pub artifact_blob: Desc,
    /// No artifactType: the config media type is the artifact type. Untagged entry.
    pub config_typed: Desc,
    pub config_typed_config: Desc,
    /// cosign legacy signature: no subject, tagged `sha256-<hex of image>.sig`.
    pub cosign_sig: Desc,
    pub cosign_sig_layer: Desc,
    pub cosign_sig_tag: String,
    /// cosign v3 bundle: subject, listed nowhere in index.json (only in blobs/).
    pub cosign_v3: Desc,
    pub cosign_v3_bundle: Desc,
    /// An index with a subject and no artifactType: the response omits artifactType.
    pub index_referrer: Desc,

    // Referrers of `nested_amd64` through a fallback index tagged `sha256-<hex>`.
    pub fallback_index: Desc,
    pub fallback_tag: String,
    /// Entries of the fallback index: no subject field.
    pub fallback_sbom: Desc,
    pub fallback_sig: Desc,

    /// A notary-style signature of the Docker manifest list, untagged entry.
    pub docker_list_sig: Desc,

    /// A referrer whose subject is absent from the layout (listed nowhere).
    pub dangling: Desc,
    pub dangling_subject: Digest,

    /// Tags of index.json: tag -> digest.
    pub tags: BTreeMap<String, String>,
    /// Untagged index.json entries (digests), in file order.
    pub untagged: Vec<String>,
    /// Number of files under blobs/.
    pub blob_files: u64,
    /// Number of manifests and indexes among them.
    pub manifest_files: u64,
}

impl Generated {
    /// Every manifest (or index) the layout holds.
    pub fn manifests(&self) -> Vec<&Desc> {
        vec![
            &self.image,
            &self.nested_outer,
            &self.nested_inner,
            &self.nested_amd64,
            &self.nested_arm64,
            &self.bare,
            &self.docker_list,
            &self.docker_amd64,
            &self.docker_arm64,
            &self.sbom,
            &self.sbom_signature,
            &self.artifact,
            &self.config_typed,
            &self.cosign_sig,
            &self.cosign_v3,
            &self.index_referrer,
            &self.fallback_index,
            &self.fallback_sbom,
            &self.fallback_sig,
            &self.docker_list_sig,
            &self.dangling,
        ]
    }

    /// The direct referrers the layout gives `subject`, sorted by digest.
    pub fn expected_referrers(&self, subject: &str) -> Vec<ReferrerDescriptor> {
        let list: Vec<&Desc> = if subject == self.image.digest {
            vec![
                &self.sbom,
                &self.artifact,
                &self.config_typed,
                &self.cosign_sig,
                &self.cosign_v3,
                &self.index_referrer,
            ]
        } else if subject == self.sbom.digest {
            vec![&self.sbom_signature]
        } else if subject == self.nested_amd64.digest {
            vec![&self.fallback_sbom, &self.fallback_sig]
        } else if subject == self.docker_list.digest {
            vec![&self.docker_list_sig]
        } else if subject == self.dangling_subject.as_str() {
            vec![&self.dangling]
        } else {
            vec![]
        };
        sorted(list.into_iter().map(Desc::referrer).collect())
    }
}

/// Referrer descriptors sorted by digest (the store promises no order).
pub fn sorted(mut v: Vec<ReferrerDescriptor>) -> Vec<ReferrerDescriptor> {
    v.sort_by(|a, b| a.digest.cmp(&b.digest));
    v
}

/// Writes the test layout into `root` (which must be empty or missing).
pub fn generate(root: &Path) -> Generated {
    write_skeleton(root);

    // The empty config, shared by artifacts.
    let empty = Desc::write(root, OCI_EMPTY, b"{}");

    // Image A.
    let image_config = Desc::write(
        root,
        OCI_CONFIG,
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
    );
    let image_layer = Desc::write(root, OCI_LAYER_GZIP, b"\x1f\x8b\x08\x00layer of image A");
    let image_bytes = manifest_json(
        image_config.json(),
        vec![image_layer.json()],
        None,
        None,
        &[("org.opencontainers.image.title", "image A")],
    );
    let image = Desc::write(root, OCI_MANIFEST, &image_bytes);

    // Nested indexes.
    let nested_config = Desc::write(root, OCI_CONFIG, br#"{"architecture":"any","os":"linux"}"#);
    let nested_layer = Desc::write(root, OCI_LAYER_GZIP, b"\x1f\x8b\x08\x00nested layer");
    let nested_amd64 = Desc::write(
        root,
        OCI_MANIFEST,
        &manifest_json(
            nested_config.json(),
            vec![nested_layer.json()],
            None,
            None,
            &[("arch", "amd64")],
        ),
    );
    let nested_arm64 = Desc::write(
        root,
        OCI_MANIFEST,
        &manifest_json(
            nested_config.json(),
            vec![nested_layer.json()],
            None,
            None,
            &[("arch", "arm64")],
        ),
    );
    // No top-level mediaType, pretty-printed with a trailing newline, like umoci writes.
    let bare_config = Desc::write(
        root,
        OCI_CONFIG,
        br#"{"architecture":"s390x","os":"linux"}"#,
    );
    let mut bare_bytes = serde_json::to_vec_pretty(&Value::Object(manifest_object(
        bare_config.json(),
        vec![nested_layer.json()],
        None,
        None,
        &[],
    )))
    .unwrap();
    bare_bytes.push(b'\n');
    let bare = Desc::write(root, OCI_MANIFEST, &bare_bytes);
    let platform = |d: &Desc, arch: &str| {
        let mut v = d.json();
        v["platform"] = json!({ "architecture": arch, "os": "linux" });
        v
    };
    let nested_inner = Desc::write(
        root,
        OCI_INDEX,
        &index_json(
            OCI_INDEX,
            vec![
                platform(&nested_amd64, "amd64"),
                platform(&nested_arm64, "arm64"),
                platform(&bare, "s390x"),
            ],
            None,
            None,
            &[],
        ),
    );
    let nested_outer = Desc::write(
        root,
        OCI_INDEX,
        &index_json(
            OCI_INDEX,
            vec![nested_inner.json()],
            None,
            None,
            &[("level", "outer")],
        ),
    );

    // Docker.
    let docker_config = Desc::write(
        root,
        DOCKER_CONFIG,
        br#"{"architecture":"amd64","os":"windows"}"#,
    );
    let docker_layer = Desc::write(root, DOCKER_LAYER, b"\x1f\x8b\x08\x00docker layer");
    let foreign_layer = Desc::absent(
        DOCKER_FOREIGN_LAYER,
        b"windows base layer, never downloaded",
    );
    let mut foreign_json = foreign_layer.json();
    foreign_json["urls"] = json!(["https://example.invalid/windows/base.tar.gz"]);
    let docker_doc = |config: &Desc, layers: Vec<Value>| {
        let doc = json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": config.json(),
            "layers": layers,
        });
        serde_json::to_vec_pretty(&doc).unwrap()
    };
    let docker_amd64 = Desc::write(
        root,
        DOCKER_MANIFEST,
        &docker_doc(&docker_config, vec![foreign_json, docker_layer.json()]),
    );
    let docker_arm64_config = Desc::write(
        root,
        DOCKER_CONFIG,
        br#"{"architecture":"arm64","os":"linux"}"#,
    );
    let docker_arm64 = Desc::write(
        root,
        DOCKER_MANIFEST,
        &docker_doc(&docker_arm64_config, vec![docker_layer.json()]),
    );
    let docker_list = Desc::write(
        root,
        DOCKER_MANIFEST_LIST,
        &index_json(
            DOCKER_MANIFEST_LIST,
            vec![
                platform(&docker_amd64, "amd64"),
                platform(&docker_arm64, "arm64"),
            ],
            None,
            None,
            &[],
        ),
    );

    // Referrers of image A.
    let sbom_layer = Desc::write(
        root,
        "application/spdx+json",
        br#"{"spdxVersion":"SPDX-2.3"}"#,
    );
    let sbom_ann = [
        ("org.opencontainers.image.created", "2024-01-02T03:04:05Z"),
        ("org.example.kind", "sbom"),
    ];
    let sbom = Desc::write(
        root,
        OCI_MANIFEST,
        &manifest_json(
            empty.json(),
            vec![sbom_layer.json()],
            Some(image.json()),
            Some(SBOM_TYPE),
            &sbom_ann,
        ),
    )
    .with_referrer_info(Some(SBOM_TYPE), &sbom_ann);

    let sig_blob = Desc::write(root, "application/octet-stream", b"signature over the sbom");
    let sbom_sig_ann = [("org.example.signed", "sbom")];
    let sbom_signature = Desc::write(
        root,
        OCI_MANIFEST,
        &manifest_json(
            empty.json(),
            vec![sig_blob.json()],
            Some(sbom.json()),
            Some(SIGNATURE_TYPE),
            &sbom_sig_ann,
        ),
    )
    .with_referrer_info(Some(SIGNATURE_TYPE), &sbom_sig_ann);

    let artifact_blob = Desc::write(
        root,
        "application/vnd.cyclonedx+json",
        br#"{"bomFormat":"CycloneDX"}"#,
    );
    let artifact_ann = [("org.example.tool", "oras 0.16")];
    let artifact_bytes = serde_json::to_vec(&json!({
        "mediaType": OCI_ARTIFACT_MANIFEST,
        "artifactType": SBOM_TYPE,
        "blobs": [artifact_blob.json()],
        "subject": image.json(),
        "annotations": annotations(&artifact_ann),
    }))
    .unwrap();
    let artifact = Desc::write(root, OCI_ARTIFACT_MANIFEST, &artifact_bytes)
        .with_referrer_info(Some(SBOM_TYPE), &artifact_ann);

    let config_typed_config = Desc::write(root, EXAMPLE_CONFIG_TYPE, br#"{"example":true}"#);
    let config_typed_ann = [("org.example.rule", "config media type")];
    let config_typed = Desc::write(
        root,
        OCI_MANIFEST,
        &manifest_json(
            config_typed_config.json(),
            vec![empty.json()],
            Some(image.json()),
            None,
            &config_typed_ann,
        ),
    )
    .with_referrer_info(Some(EXAMPLE_CONFIG_TYPE), &config_typed_ann);

    let cosign_sig_layer = Desc::write(
        root,
        COSIGN_SIMPLESIGNING,
        format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"example"}},"image":{{"docker-manifest-digest":"{}"}},"type":"cosign container image signature"}},"optional":null}}"#,
            image.digest
        )
        .as_bytes(),
    );
    let mut sig_layer_json = cosign_sig_layer.json();
    sig_layer_json["annotations"] = json!({ "dev.cosignproject.cosign/signature": "MEUCIQ==" });
    let cosign_config = Desc::write(
        root,
        OCI_CONFIG,
        br#"{"architecture":"","os":"","config":{}}"#,
    );
    let cosign_ann = [("org.example.cosign", "legacy")];
    let cosign_sig = Desc::write(
        root,
        OCI_MANIFEST,
        &manifest_json(
            cosign_config.json(),
            vec![sig_layer_json],
            None,
            None,
            &cosign_ann,
        ),
    )
    .with_referrer_info(Some(OCI_CONFIG), &cosign_ann);
    let cosign_sig_tag = format!("sha256-{}.sig", image.hex());

    let cosign_v3_bundle = Desc::write(
        root,
        SIGSTORE_BUNDLE_TYPE,
        br#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}"#,
    );
    let cosign_v3_ann = [
        ("dev.sigstore.bundle.content", "dsse-envelope"),
        (
            "dev.sigstore.bundle.predicateType",
            "https://slsa.dev/provenance/v1",
        ),
        ("org.opencontainers.image.created", "2025-06-07T08:09:10Z"),
    ];
    let cosign_v3 = Desc::write(
        root,
        OCI_MANIFEST,
        &manifest_json(
            empty.json(),
            vec![cosign_v3_bundle.json()],
            Some(image.json()),
            Some(SIGSTORE_BUNDLE_TYPE),
            &cosign_v3_ann,
        ),
    )
    .with_referrer_info(Some(SIGSTORE_BUNDLE_TYPE), &cosign_v3_ann);

    let index_referrer_ann = [("org.example.kind", "index referrer")];
    let index_referrer = Desc::write(
        root,
        OCI_INDEX,
        &index_json(
            OCI_INDEX,
            vec![],
            Some(image.json()),
            None,
            &index_referrer_ann,
        ),
    )
    .with_referrer_info(None, &index_referrer_ann);

    // Fallback index for nested_amd64: its entries carry no subject.
    let fb_sbom_layer = Desc::write(
        root,
        "application/spdx+json",
        br#"{"spdxVersion":"SPDX-2.3","name":"amd64"}"#,
    );
    let fb_sbom_ann = [("org.example.via", "fallback")];
    let fallback_sbom = Desc::write(
        root,
        OCI_MANIFEST,
        &manifest_json(
            empty.json(),
            vec![fb_sbom_layer.json()],
            None,
            Some(SBOM_TYPE),
            &fb_sbom_ann,
        ),
    )
    .with_referrer_info(Some(SBOM_TYPE), &fb_sbom_ann);
    let fb_sig_layer = Desc::write(root, "application/jose+json", br#"{"payload":"notary"}"#);
    let fallback_sig = Desc::write(
        root,
        OCI_MANIFEST,
        &manifest_json(
            empty.json(),
            vec![fb_sig_layer.json()],
            None,
            Some(NOTARY_TYPE),
            &[],
        ),
    )
    .with_referrer_info(Some(NOTARY_TYPE), &[]);
    let with_artifact_type = |d: &Desc| {
        let mut v = d.json();
        if let Some(t) = &d.artifact_type {
            v["artifactType"] = t.as_str().into();
        }
        if !d.annotations.is_empty() {
            v["annotations"] = json!(d.annotations);
        }
        v
    };
    let fallback_index = Desc::write(
        root,
        OCI_INDEX,
        &index_json(
            OCI_INDEX,
            vec![
                with_artifact_type(&fallback_sbom),
                with_artifact_type(&fallback_sig),
            ],
            None,
            None,
            &[],
        ),
    );
    let fallback_tag = format!("sha256-{}", nested_amd64.hex());

    // A notary-style signature of the Docker list (oras style: untagged entry).
    let list_sig_layer = Desc::write(root, "application/jose+json", br#"{"payload":"list"}"#);
    let docker_list_sig = Desc::write(
        root,
        OCI_MANIFEST,
        &manifest_json(
            empty.json(),
            vec![list_sig_layer.json()],
            Some(docker_list.json()),
            Some(NOTARY_TYPE),
            &[],
        ),
    )
    .with_referrer_info(Some(NOTARY_TYPE), &[]);

    // A referrer pushed before its subject: the subject's blob is not in the layout.
    let missing_subject = Desc::absent(
        OCI_MANIFEST,
        b"{\"schemaVersion\":2,\"note\":\"never written\"}",
    );
    let dangling_ann = [("org.example.kind", "dangling")];
    let dangling = Desc::write(
        root,
        OCI_MANIFEST,
        &manifest_json(
            empty.json(),
            vec![empty.json()],
            Some(missing_subject.json()),
            Some(SIGNATURE_TYPE),
            &dangling_ann,
        ),
    )
    .with_referrer_info(Some(SIGNATURE_TYPE), &dangling_ann);

    // index.json: tags, and untagged entries in the oras style (no ref.name).
    let mut tags = BTreeMap::new();
    let mut entries = Vec::new();
    let mut untagged = Vec::new();
    let mut tagged = |d: &Desc, tag: &str| {
        tags.insert(tag.to_owned(), d.digest.clone());
        entries.push(entry(d, Some(tag)));
    };
    tagged(&image, "v1");
    tagged(&nested_outer, "nested");
    tagged(&bare, "bare");
    tagged(&docker_list, "docker");
    tagged(&cosign_sig, &cosign_sig_tag);
    tagged(&fallback_index, &fallback_tag);
    for d in [&sbom, &artifact, &config_typed, &docker_list_sig] {
        let mut e = entry(d, None);
        if let Some(t) = &d.artifact_type {
            e["artifactType"] = t.as_str().into();
        }
        entries.push(e);
        untagged.push(d.digest.clone());
    }
    write_index_json(root, entries);

    let blob_files = fs::read_dir(root.join("blobs").join("sha256"))
        .unwrap()
        .count() as u64;
    let mut g = Generated {
        image,
        image_config,
        image_layer,
        empty,
        nested_outer,
        nested_inner,
        nested_amd64,
        nested_arm64,
        nested_config,
        nested_layer,
        bare,
        bare_config,
        docker_list,
        docker_amd64,
        docker_arm64,
        docker_config,
        docker_layer,
        foreign_layer,
        sbom,
        sbom_layer,
        sbom_signature,
        artifact,
        artifact_blob,
        config_typed,
        config_typed_config,
        cosign_sig,
        cosign_sig_layer,
        cosign_sig_tag,
        cosign_v3,
        cosign_v3_bundle,
        index_referrer,
        fallback_index,
        fallback_tag,
        fallback_sbom,
        fallback_sig,
        docker_list_sig,
        dangling,
        dangling_subject: missing_subject.digest(),
        tags,
        untagged,
        blob_files,
        manifest_files: 0,
    };
    g.manifest_files = g.manifests().len() as u64;
    g
}

/// Every file under `root` outside `.ocistore/`, by relative path, with its bytes.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            if rel == Path::new(".ocistore") {
                continue;
            }
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(path);
            } else {
                out.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// Files in `<root>/.ocistore/ingest/`.
pub fn ingest_files(root: &Path) -> Vec<PathBuf> {
    match fs::read_dir(root.join(".ocistore").join("ingest")) {
        Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// The digests (`sha256:<hex>`) of the files under `<root>/blobs/sha256/`.
pub fn blob_digests(root: &Path) -> std::collections::BTreeSet<String> {
    match fs::read_dir(root.join("blobs").join("sha256")) {
        Ok(rd) => rd
            .map(|e| format!("sha256:{}", e.unwrap().file_name().to_string_lossy()))
            .collect(),
        Err(_) => Default::default(),
    }
}

/// Everything reachable from `roots` through strong edges (`config`, `layers`, `manifests`,
/// `blobs`; never `subject`), found by reading the JSON files of the layout at `root` with this
/// module's own parsing, independently of the store. Digests whose files are absent (or are not
/// JSON) are included but not followed.
pub fn strong_closure(root: &Path, roots: &[&str]) -> std::collections::BTreeSet<String> {
    let mut seen = std::collections::BTreeSet::new();
    let mut stack: Vec<String> = roots.iter().map(|s| (*s).to_owned()).collect();
    while let Some(d) = stack.pop() {
        if !seen.insert(d.clone()) {
            continue;
        }
        let Some(hex) = d.strip_prefix("sha256:") else {
            continue;
        };
        let Ok(bytes) = fs::read(root.join("blobs").join("sha256").join(hex)) else {
            continue;
        };
        let Ok(doc) = serde_json::from_slice::<Value>(&bytes) else {
            continue;
        };
        if let Some(c) = doc.get("config").and_then(|c| c.get("digest")) {
            stack.push(c.as_str().unwrap().to_owned());
        }
        for list in ["layers", "manifests", "blobs"] {
            for desc in doc
                .get(list)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                stack.push(desc["digest"].as_str().unwrap().to_owned());
            }
        }
    }
    seen
}

/// Runs the `ocistore` binary on `store` with `args` and expects a user error: exit status 1,
/// exactly one line on stderr, `error: …`, and no panic or backtrace anywhere. Returns that line.
pub fn cli_error(store: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ocistore"))
        .env_remove("OCISTORE_DIR")
        .env("RUST_BACKTRACE", "1")
        .arg("--store")
        .arg(store)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let all = format!("{}{stderr}", String::from_utf8_lossy(&out.stdout)).to_lowercase();
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    assert!(
        !all.contains("panicked") && !all.contains("backtrace") && !all.contains("internal error"),
        "{args:?}: {stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
    stderr.trim_end().to_owned()
}

/// Copies a directory tree (files and directories; nothing else is expected in a layout).
pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// The tags of `<root>/index.json` (tag -> digest), as the file lists them.
pub fn index_json_tags(root: &Path) -> BTreeMap<String, String> {
    let doc: Value = serde_json::from_slice(&fs::read(root.join("index.json")).unwrap()).unwrap();
    doc["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            let tag = e["annotations"][REF_NAME].as_str()?;
            Some((tag.to_owned(), e["digest"].as_str().unwrap().to_owned()))
        })
        .collect()
}

/// The tags the store lists (tag -> digest).
pub fn store_tags(store: &ocistore::Store) -> BTreeMap<String, String> {
    store
        .list()
        .unwrap()
        .into_iter()
        .filter_map(|e| Some((e.tag?, e.digest.to_string())))
        .collect()
}

/// The digests of the referrers the store answers for `subject`, transitively when asked.
pub fn referrer_digests(
    store: &ocistore::Store,
    subject: &Digest,
    transitive: bool,
) -> std::collections::BTreeSet<String> {
    let query = ocistore::ReferrersQuery {
        transitive,
        ..Default::default()
    };
    let answer = store.referrers(subject, &query).unwrap();
    answer.manifests.into_iter().map(|m| m.digest).collect()
}

/// A collection with no grace period and an orphan walk: everything not live goes now.
pub fn collect_now(store: &ocistore::Store) -> ocistore::gc::GcReport {
    let opts = ocistore::gc::GcOptions {
        grace: std::time::Duration::ZERO,
        scan_orphans: true,
        ..Default::default()
    };
    store.gc(&opts).unwrap()
}
