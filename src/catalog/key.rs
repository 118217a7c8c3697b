//! The stored form of a digest: the key (and, in the edge tables, the value) of every table the
//! catalog keys by digest.
//!
//! Invariant: the encoding is a function of the digest's text alone, and decoding inverts it
//! exactly. The canonical text of a registered digest (`sha256:`, `sha512:` or `blake3:` and
//! lower-case hex of the algorithm's length) is stored as one algorithm byte and the raw hash,
//! 33 bytes for sha256 against 71 as text. Every other string is stored as a marker byte and its
//! text. The index is then about half the size, and so is what a sweep rewrites.
//!
//! Encodings order as their bytes. For one registered algorithm that is the order of the text;
//! the algorithm bytes order as the names do, and unregistered digests sort last.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

/// The marker of a digest stored as text.
const TEXT: u8 = 0xff;

/// The registered algorithms: byte, name, hash length in bytes.
const ALGORITHMS: [(u8, &str, usize); 3] =
    [(1, "blake3", 32), (2, "sha256", 32), (3, "sha512", 64)];

/// Longest binary encoding: the algorithm byte and a 64-byte hash.
const MAX_BINARY: usize = 65;

/// Longest text of a binary encoding: `sha512:` and 128 hex digits.
const MAX_TEXT: usize = 135;

/// redb's type of a digest column.
#[derive(Debug)]
pub(crate) struct DigestKey;

/// A digest handed to or read from a digest column: text from the caller, or stored bytes.
#[derive(Clone, Copy)]
pub(crate) enum Dk<'a> {
    /// A digest's text.
    Text(&'a str),
    /// An encoding read from a table.
    Stored(&'a [u8]),
}

/// A digest's text as a key.
pub(crate) fn dk(digest: &str) -> Dk<'_> {
    Dk::Text(digest)
}

/// The stored encoding of a digest's text, as a table holds it.
pub(crate) fn encode(digest: &str) -> Encoded<'_> {
    Dk::Text(digest).encode()
}

/// The text of a stored encoding.
pub(crate) fn decode(stored: &[u8]) -> String {
    Dk::Stored(stored).text().as_str().to_owned()
}

/// The bytes of an encoding.
pub(crate) enum Encoded<'a> {
    Inline([u8; MAX_BINARY], usize),
    Borrowed(&'a [u8]),
    Owned(Vec<u8>),
}

impl AsRef<[u8]> for Encoded<'_> {
    fn as_ref(&self) -> &[u8] {
        match self {
            Encoded::Inline(b, n) => &b[..*n],
            Encoded::Borrowed(b) => b,
            Encoded::Owned(b) => b,
        }
    }
}

/// A digest's text, decoded without allocating.
pub(crate) enum DigestText<'a> {
    Inline([u8; MAX_TEXT], usize),
    Borrowed(&'a str),
    Owned(String),
}

impl DigestText<'_> {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            // Only ASCII is ever written to the buffer.
            DigestText::Inline(b, n) => std::str::from_utf8(&b[..*n]).unwrap_or("?"),
            DigestText::Borrowed(s) => s,
            DigestText::Owned(s) => s,
        }
    }
}

impl<'a> Dk<'a> {
    /// The stored encoding: borrowed as read from a table, or encoded from text.
    pub(crate) fn encode(&self) -> Encoded<'a> {
        let s = match *self {
            Dk::Stored(b) => return Encoded::Borrowed(b),
            Dk::Text(s) => s,
        };
        let b = s.as_bytes();
        for &(code, name, len) in &ALGORITHMS {
            let start = name.len() + 1;
            if b.len() == start + 2 * len && b[name.len()] == b':' && b.starts_with(name.as_bytes())
            {
                let mut out = [0u8; MAX_BINARY];
                out[0] = code;
                if decode_lower_hex(&b[start..], &mut out[1..=len]) {
                    return Encoded::Inline(out, len + 1);
                }
                break;
            }
        }
        let mut out = Vec::with_capacity(s.len() + 1);
        out.push(TEXT);
        out.extend_from_slice(s.as_bytes());
        Encoded::Owned(out)
    }

    /// The digest's text.
    pub(crate) fn text(&self) -> DigestText<'a> {
        let b = match *self {
            Dk::Text(s) => return DigestText::Borrowed(s),
            Dk::Stored(b) => b,
        };
        match b.split_first() {
            Some((&TEXT, rest)) => match std::str::from_utf8(rest) {
                Ok(s) => DigestText::Borrowed(s),
                Err(_) => DigestText::Owned(String::from_utf8_lossy(rest).into_owned()),
            },
            Some((&code, hash)) => match ALGORITHMS.iter().find(|(c, _, _)| *c == code) {
                Some(&(_, name, len)) if hash.len() == len => {
                    let mut out = [0u8; MAX_TEXT];
                    out[..name.len()].copy_from_slice(name.as_bytes());
                    out[name.len()] = b':';
                    let start = name.len() + 1;
                    let end = start + 2 * len;
                    match hex::encode_to_slice(hash, &mut out[start..end]) {
                        Ok(()) => DigestText::Inline(out, end),
                        Err(_) => DigestText::Owned(format!("corrupt:{}", hex::encode(b))),
                    }
                }
                // Not an encoding this module writes (a separator in a branch page, or damage):
                // shown as hex, which no digest equals.
                _ => DigestText::Owned(format!("corrupt:{}", hex::encode(b))),
            },
            None => DigestText::Owned(String::from("corrupt:")),
        }
    }
}

/// The value of each lower-case hex digit, and 0xff for every other byte.
const NIBBLES: [u8; 256] = {
    let mut t = [0xff; 256];
    let mut i = 0;
    while i < 16 {
        t[b"0123456789abcdef"[i] as usize] = i as u8;
        i += 1;
    }
    t
};

/// Decodes lower-case hex (only: upper case would not come back the same) into `out`, which is
/// half as long. Returns false on any other byte.
fn decode_lower_hex(hex: &[u8], out: &mut [u8]) -> bool {
    let mut bad = 0u8;
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let (hi, lo) = (NIBBLES[usize::from(pair[0])], NIBBLES[usize::from(pair[1])]);
        bad |= hi | lo;
        *o = (hi << 4) | (lo & 0x0f);
    }
    bad & 0xf0 == 0
}

impl fmt::Display for Dk<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text().as_str())
    }
}

impl fmt::Debug for Dk<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dk({self})")
    }
}

impl redb::Value for DigestKey {
    type SelfType<'a>
        = Dk<'a>
    where
        Self: 'a;
    type AsBytes<'a>
        = Encoded<'a>
    where
        Self: 'a;

    fn fixed_width() -> Option<usize> {
        None
    }

    fn from_bytes<'a>(data: &'a [u8]) -> Dk<'a>
    where
        Self: 'a,
    {
        Dk::Stored(data)
    }

    fn as_bytes<'a, 'b: 'a>(value: &'a Dk<'b>) -> Encoded<'a>
    where
        Self: 'b,
    {
        value.encode()
    }

    fn type_name() -> redb::TypeName {
        redb::TypeName::new("ocistore::Digest")
    }
}

impl redb::Key for DigestKey {
    fn compare(a: &[u8], b: &[u8]) -> Ordering {
        a.cmp(b)
    }

    fn separator<'a>(left: &'a [u8], right: &'a [u8]) -> Cow<'a, [u8]> {
        // `right` cut just past the first byte where it exceeds `left` sorts between the two,
        // when that cut drops bytes from both.
        let len = left.iter().zip(right).take_while(|(x, y)| x == y).count() + 1;
        if len < left.len() && len < right.len() {
            Cow::Borrowed(&right[..len])
        } else {
            Cow::Borrowed(left)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::Value;

    fn roundtrip(s: &str) -> (usize, String) {
        let key = dk(s);
        let bytes = DigestKey::as_bytes(&key).as_ref().to_vec();
        (bytes.len(), DigestKey::from_bytes(&bytes).to_string())
    }

    #[test]
    fn registered_digests_are_stored_as_binary_and_come_back_as_text() {
        let sha256 = format!("sha256:{}", "0123456789abcdef".repeat(4));
        let sha512 = format!("sha512:{}", "fedcba9876543210".repeat(8));
        let blake3 = format!("blake3:{}", "a".repeat(64));
        assert_eq!(roundtrip(&sha256), (33, sha256.clone()));
        assert_eq!(roundtrip(&sha512), (65, sha512.clone()));
        assert_eq!(roundtrip(&blake3), (33, blake3.clone()));
    }

    #[test]
    fn other_strings_are_stored_as_text_and_come_back_unchanged() {
        for s in [
            "sha256:ABCDEF".to_string(),
            format!("sha256:{}", "A".repeat(64)),
            format!("sha256:{}", "a".repeat(63)),
            "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8".to_string(),
            "sha256".to_string(),
            String::new(),
        ] {
            assert_eq!(roundtrip(&s), (s.len() + 1, s.clone()));
        }
    }

    #[test]
    fn encodings_of_one_algorithm_order_as_their_text() {
        let mut texts: Vec<String> = (0u32..64)
            .map(|i| {
                format!(
                    "sha256:{:064x}",
                    u128::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15)
                )
            })
            .collect();
        texts.push(format!("blake3:{}", "f".repeat(64)));
        texts.push(format!("sha512:{}", "0".repeat(128)));
        let mut by_key = texts.clone();
        by_key.sort_by(|a, b| {
            DigestKey::as_bytes(&dk(a))
                .as_ref()
                .cmp(DigestKey::as_bytes(&dk(b)).as_ref())
        });
        texts.sort();
        assert_eq!(by_key, texts);
    }

    #[test]
    fn a_truncated_encoding_reads_as_corrupt_and_never_panics() {
        for b in [&[][..], &[2u8, 1, 2][..], &[9u8, 1][..], &[TEXT, 0xc3][..]] {
            assert!(!Dk::Stored(b).to_string().starts_with("sha256:"));
        }
    }
}
