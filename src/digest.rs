//! Content digests: the OCI grammar, the registered algorithms, hashing, and the blob path.
//!
//! Invariant: a [`Digest`] value always matches the OCI digest grammar
//! (`^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$`), and for a registered algorithm its encoded
//! part has exactly the algorithm's length in lower-case hex. Only such a value can be turned into
//! a path, so no path is ever built from unvalidated input: neither part can hold `/`, and the
//! algorithm part cannot be `.` or `..`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use sha2::Digest as _;

use crate::error::{Error, Result};

/// Longest digest string accepted. It keeps both path components well under `NAME_MAX`.
const MAX_LEN: usize = 255;

/// A digest algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// SHA-256, the algorithm every implementation must support.
    Sha256,
    /// SHA-512.
    Sha512,
    /// BLAKE3 with 256-bit output.
    Blake3,
    /// An algorithm that matches the grammar but is not registered: stored opaquely, never verified.
    Unregistered,
}

impl Algorithm {
    fn from_name(name: &str) -> Algorithm {
        match name {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            "blake3" => Algorithm::Blake3,
            _ => Algorithm::Unregistered,
        }
    }

    /// Length of the hex encoding, for registered algorithms.
    fn hex_len(self) -> Option<usize> {
        match self {
            Algorithm::Sha256 | Algorithm::Blake3 => Some(64),
            Algorithm::Sha512 => Some(128),
            Algorithm::Unregistered => None,
        }
    }

    /// The canonical name, for registered algorithms.
    pub fn name(self) -> Option<&'static str> {
        match self {
            Algorithm::Sha256 => Some("sha256"),
            Algorithm::Sha512 => Some("sha512"),
            Algorithm::Blake3 => Some("blake3"),
            Algorithm::Unregistered => None,
        }
    }
}

/// A validated content digest such as `sha256:4413…`.
///
/// ```
/// use ocistore::Digest;
/// let d: Digest = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a".parse()?;
/// assert_eq!(d.algorithm_name(), "sha256");
/// assert!("sha256:../../etc/passwd".parse::<Digest>().is_err());
/// assert_eq!(Digest::sha256(b"{}"), d);
/// # Ok::<(), ocistore::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    full: String,
    colon: usize,
}

impl Digest {
    /// Validates `s` against the OCI digest grammar and the rules of its algorithm.
    pub fn parse(s: &str) -> Result<Digest> {
        let bad = |reason| Error::InvalidDigest {
            input: s.chars().take(80).collect(),
            reason,
        };
        if s.len() > MAX_LEN {
            return Err(bad("longer than 255 characters"));
        }
        let colon = s.find(':').ok_or_else(|| bad("missing ':' separator"))?;
        let (alg, enc) = (&s[..colon], &s[colon + 1..]);
        if !valid_algorithm(alg) {
            return Err(bad(
                "algorithm must be lower-case alphanumerics joined by one of + . _ -",
            ));
        }
        if enc.is_empty() {
            return Err(bad("empty encoded part"));
        }
        if !enc
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'))
        {
            return Err(bad("encoded part may only hold [a-zA-Z0-9=_-]"));
        }
        let algorithm = Algorithm::from_name(alg);
        if let Some(len) = algorithm.hex_len() {
            if enc.len() != len {
                return Err(bad(match algorithm {
                    Algorithm::Sha512 => "sha512 needs 128 hex characters",
                    _ => "sha256 and blake3 need 64 hex characters",
                }));
            }
            if !enc.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                return Err(bad("registered algorithms need lower-case hex"));
            }
        }
        Ok(Digest {
            full: s.to_owned(),
            colon,
        })
    }

    /// The SHA-256 digest of `data`.
    pub fn sha256(data: &[u8]) -> Digest {
        let mut h = Hasher::new(Algorithm::Sha256).expect("sha256 is registered");
        h.update(data);
        h.finish()
    }

    /// The digest as text.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// The algorithm part, such as `sha256`.
    pub fn algorithm_name(&self) -> &str {
        &self.full[..self.colon]
    }

    /// The encoded part (hex for registered algorithms).
    pub fn encoded(&self) -> &str {
        &self.full[self.colon + 1..]
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        Algorithm::from_name(self.algorithm_name())
    }

    /// Whether the store can hash content to check this digest.
    pub fn is_verifiable(&self) -> bool {
        self.algorithm() != Algorithm::Unregistered
    }

    /// `blobs/<alg>/<encoded>`, relative to the layout root.
    pub fn blob_path(&self) -> PathBuf {
        let mut p = PathBuf::from("blobs");
        p.push(self.algorithm_name());
        p.push(self.encoded());
        p
    }
}

fn valid_algorithm(alg: &str) -> bool {
    // component ([+._-] component)*, component = [a-z0-9]+
    let mut prev_sep = true;
    for b in alg.bytes() {
        match b {
            b'a'..=b'z' | b'0'..=b'9' => prev_sep = false,
            b'+' | b'.' | b'_' | b'-' if !prev_sep => prev_sep = true,
            _ => return false,
        }
    }
    !alg.is_empty() && !prev_sep
}

impl FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Digest> {
        Digest::parse(s)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.full)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.full)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Digest, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl AsRef<str> for Digest {
    fn as_ref(&self) -> &str {
        &self.full
    }
}

/// An incremental hasher for one registered algorithm.
pub struct Hasher {
    inner: HasherInner,
}

enum HasherInner {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
    Blake3(Box<blake3::Hasher>),
}

impl Hasher {
    /// A hasher for `alg`, or `None` for an unregistered algorithm.
    pub fn new(alg: Algorithm) -> Option<Hasher> {
        let inner = match alg {
            Algorithm::Sha256 => HasherInner::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => HasherInner::Sha512(sha2::Sha512::new()),
            Algorithm::Blake3 => HasherInner::Blake3(Box::new(blake3::Hasher::new())),
            Algorithm::Unregistered => return None,
        };
        Some(Hasher { inner })
    }

    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.inner {
            HasherInner::Sha256(h) => h.update(data),
            HasherInner::Sha512(h) => h.update(data),
            HasherInner::Blake3(h) => {
                h.update(data);
            }
        }
    }

    /// The digest of everything fed.
    pub fn finish(self) -> Digest {
        let (alg, hex) = match self.inner {
            HasherInner::Sha256(h) => ("sha256", hex::encode(h.finalize())),
            HasherInner::Sha512(h) => ("sha512", hex::encode(h.finalize())),
            HasherInner::Blake3(h) => ("blake3", hex::encode(h.finalize().as_bytes())),
        };
        Digest {
            colon: alg.len(),
            full: format!("{alg}:{hex}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar() {
        let ok = [
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8",
            "sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564",
            "foo.bar_baz-1:Zm9v=",
        ];
        for s in ok {
            assert_eq!(Digest::parse(s).unwrap().as_str(), s);
        }
        let bad = [
            "sha256",
            "sha256:",
            ":abc",
            "SHA256:abc",
            "sha256:44136FA355B3678A1146AD16F7E8649E94FB4FC21FE77E8310C060F61CAAFF8A",
            "sha256:abc",
            "sha256:../../etc/passwd",
            "../x:abc",
            "a..b:abc",
            "a+:abc",
            "foo:a/b",
            "foo:a.b",
        ];
        for s in bad {
            assert!(Digest::parse(s).is_err(), "{s} accepted");
        }
    }

    #[test]
    fn hashers_match_known_values() {
        assert_eq!(
            Digest::sha256(b"{}").as_str(),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        let mut h = Hasher::new(Algorithm::Blake3).unwrap();
        h.update(b"");
        assert_eq!(
            h.finish().encoded(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        let mut h = Hasher::new(Algorithm::Sha512).unwrap();
        h.update(b"");
        assert!(
            h.finish()
                .encoded()
                .starts_with("cf83e1357eefb8bdf1542850d66d8007")
        );
    }

    #[test]
    fn blob_path_stays_inside() {
        let d = Digest::parse("foo.bar:abc").unwrap();
        assert_eq!(d.blob_path(), PathBuf::from("blobs/foo.bar/abc"));
    }
}
