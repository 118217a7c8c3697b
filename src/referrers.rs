//! The referrers response (distribution-spec "Listing Referrers"), built from the catalog alone.
//!
//! A referrer of S is a manifest linked to S by its `subject`, by a cosign tag named after S, or
//! by an entry of S's fallback index. Each appears once, whatever the number of links. Its
//! descriptor carries `artifactType` (the manifest's own, else its config's media type; omitted
//! when neither exists) and all of its annotations. The transitive mode walks referrers of
//! referrers breadth-first and visits each manifest once, so cycles end.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::catalog::{Reader, Source};
use crate::digest::Digest;
use crate::error::Result;
use crate::manifest::OCI_INDEX;

/// Options of a referrers query.
#[derive(Clone, Debug, Default)]
pub struct ReferrersQuery {
    /// Keep only referrers of this artifact type.
    pub artifact_type: Option<String>,
    /// Also list referrers of referrers, recursively.
    pub transitive: bool,
}

/// A descriptor in a referrers response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferrerDescriptor {
    /// The referrer's media type.
    pub media_type: String,
    /// Its digest.
    pub digest: String,
    /// Its size.
    pub size: u64,
    /// Its artifact type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Its annotations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The referrers response: an OCI image index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferrersIndex {
    /// Always 2.
    pub schema_version: u32,
    /// Always the OCI image index type.
    pub media_type: &'static str,
    /// The referrers.
    pub manifests: Vec<ReferrerDescriptor>,
    /// The filters applied (`["artifactType"]` when filtered), as the
    /// `OCI-Filters-Applied` header would say. Not part of the JSON body.
    #[serde(skip)]
    pub filters_applied: Vec<&'static str>,
}

pub(crate) fn query(
    reader: &Reader,
    subject: &Digest,
    q: &ReferrersQuery,
) -> Result<ReferrersIndex> {
    let mut out = Vec::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    seen.insert(subject.to_string());
    let mut level = vec![subject.to_string()];
    while !level.is_empty() {
        let mut next = BTreeSet::new();
        for s in &level {
            for (r, source) in reader.referrers(s)? {
                if source == Source::FallbackIndex || seen.contains(&r) {
                    continue;
                }
                // A referrer the store does not hold cannot be described (or fetched): skip it.
                let Some(m) = reader.manifest(&r)? else {
                    continue;
                };
                seen.insert(r.clone());
                if q.transitive {
                    next.insert(r.clone());
                }
                if q.artifact_type
                    .as_ref()
                    .is_none_or(|t| m.artifact_type.as_ref() == Some(t))
                {
                    out.push(ReferrerDescriptor {
                        media_type: m.media_type,
                        digest: r,
                        size: m.size,
                        artifact_type: m.artifact_type,
                        annotations: m.annotations,
                    });
                }
            }
        }
        level = next.into_iter().collect();
    }
    Ok(ReferrersIndex {
        schema_version: 2,
        media_type: OCI_INDEX,
        manifests: out,
        filters_applied: if q.artifact_type.is_some() {
            vec!["artifactType"]
        } else {
            vec![]
        },
    })
}
