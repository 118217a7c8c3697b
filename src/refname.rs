//! Tags: the ref-name grammar, and the tag names that are referrer links rather than names.
//!
//! A tag is the `org.opencontainers.image.ref.name` annotation of an index.json entry. Its grammar
//! (image-spec `annotations.md`) is enforced here, once, by [`validate_tag`]:
//!
//! ```text
//! ref       ::= component ("/" component)*
//! component ::= alphanum (separator alphanum)*
//! alphanum  ::= [A-Za-z0-9]+
//! separator ::= [-._:@+] | "--"
//! ```
//!
//! Two tag shapes link an artifact to a subject instead of naming an image (see [`ReferrerTag`]):
//! cosign's legacy `<alg>-<hex>.sig|.att|.sbom`, and the referrers fallback index `<alg>-<hex>`.

use crate::digest::Digest;
use crate::error::{Error, Result};

/// The annotation that carries a tag on an index.json entry.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Longest tag accepted.
const MAX_TAG_LEN: usize = 1024;

/// Checks a tag against the OCI ref-name grammar.
///
/// ```
/// assert!(ocistore::validate_tag("v1.0").is_ok());
/// assert!(ocistore::validate_tag("library/alpine:3.19").is_ok());
/// assert!(ocistore::validate_tag("../x").is_err());
/// ```
pub fn validate_tag(name: &str) -> Result<()> {
    let bad = |reason| Error::InvalidTag {
        name: name.chars().take(80).collect(),
        reason,
    };
    if name.is_empty() {
        return Err(bad("empty"));
    }
    if name.len() > MAX_TAG_LEN {
        return Err(bad("longer than 1024 characters"));
    }
    for component in name.split('/') {
        let b = component.as_bytes();
        if b.is_empty() {
            return Err(bad("empty path component"));
        }
        if !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
            return Err(bad(
                "each component must start and end with a letter or digit",
            ));
        }
        let mut i = 0;
        while i < b.len() {
            if b[i].is_ascii_alphanumeric() {
                i += 1;
                continue;
            }
            // A separator: one of [-._:@+] or "--", followed by an alphanumeric.
            let sep_len = if b[i] == b'-' && b.get(i + 1) == Some(&b'-') {
                2
            } else if matches!(b[i], b'-' | b'.' | b'_' | b':' | b'@' | b'+') {
                1
            } else {
                return Err(bad(
                    "only letters, digits, / and the separators - . _ : @ + are allowed",
                ));
            };
            i += sep_len;
            if !b.get(i).is_some_and(u8::is_ascii_alphanumeric) {
                return Err(bad("separators must stand between letters or digits"));
            }
        }
    }
    Ok(())
}

/// The ways a tag can link an artifact to a subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LinkKind {
    /// `<alg>-<hex>.sig`: a cosign signature.
    CosignSig,
    /// `<alg>-<hex>.att`: a cosign attestation.
    CosignAtt,
    /// `<alg>-<hex>.sbom`: a cosign SBOM.
    CosignSbom,
    /// `<alg>-<hex>`: a referrers fallback index whose entries are the subject's referrers.
    Fallback,
}

/// A tag whose name encodes a subject digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReferrerTag {
    /// The subject the tag links to.
    pub subject: Digest,
    /// How the tagged manifest relates to the subject.
    pub kind: LinkKind,
}

impl ReferrerTag {
    /// Recognises `sha256-<hex>.sig` and friends, and `sha256-<hex>` fallback tags.
    ///
    /// Only registered algorithms with their full encoding are recognised: the name must map back
    /// to exactly one digest.
    ///
    /// ```
    /// use ocistore::{ReferrerTag, LinkKind};
    /// let hex = "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
    /// let t = ReferrerTag::parse(&format!("sha256-{hex}.sig")).unwrap();
    /// assert_eq!(t.kind, LinkKind::CosignSig);
    /// assert_eq!(t.subject.encoded(), hex);
    /// assert!(ReferrerTag::parse("latest").is_none());
    /// ```
    pub fn parse(tag: &str) -> Option<ReferrerTag> {
        let (stem, kind) = if let Some(s) = tag.strip_suffix(".sig") {
            (s, LinkKind::CosignSig)
        } else if let Some(s) = tag.strip_suffix(".att") {
            (s, LinkKind::CosignAtt)
        } else if let Some(s) = tag.strip_suffix(".sbom") {
            (s, LinkKind::CosignSbom)
        } else {
            (tag, LinkKind::Fallback)
        };
        let (alg, hex) = stem.split_once('-')?;
        if !matches!(alg, "sha256" | "sha512" | "blake3") {
            return None;
        }
        let subject = Digest::parse(&format!("{alg}:{hex}")).ok()?;
        Some(ReferrerTag { subject, kind })
    }

    /// The tag name for `subject` and `kind`.
    pub fn name(subject: &Digest, kind: LinkKind) -> String {
        let suffix = match kind {
            LinkKind::CosignSig => ".sig",
            LinkKind::CosignAtt => ".att",
            LinkKind::CosignSbom => ".sbom",
            LinkKind::Fallback => "",
        };
        format!("{}-{}{suffix}", subject.algorithm_name(), subject.encoded())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar() {
        for ok in [
            "a",
            "v1.0.0",
            "a--b",
            "x/y/z",
            "repo:tag",
            "a@b+c_d",
            "sha256-abc.sig",
        ] {
            validate_tag(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "", "-a", "a-", "a/", "/a", "a//b", "a..b", "a---b", "a b", "é", "a\nb", "../x",
        ] {
            assert!(validate_tag(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn referrer_tags_round_trip() {
        let d = Digest::sha256(b"x");
        for kind in [
            LinkKind::CosignSig,
            LinkKind::CosignAtt,
            LinkKind::CosignSbom,
            LinkKind::Fallback,
        ] {
            let name = ReferrerTag::name(&d, kind);
            validate_tag(&name).unwrap();
            assert_eq!(
                ReferrerTag::parse(&name),
                Some(ReferrerTag {
                    subject: d.clone(),
                    kind
                })
            );
        }
        assert!(ReferrerTag::parse("sha256-abc.sig").is_none());
        assert!(ReferrerTag::parse("md5-abc").is_none());
    }
}
