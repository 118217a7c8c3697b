//! `Digest::parse` on arbitrary text, against a second, independent reading of the OCI digest
//! grammar. What parses must round-trip exactly and yield a blob path of three plain components
//! under `blobs/`.

use std::path::Component;

use ocistore::{Algorithm, Digest};

/// The grammar, read independently of the library:
/// `algorithm ":" encoded`, `algorithm ::= component ([+._-] component)*`,
/// `component ::= [a-z0-9]+`, `encoded ::= [a-zA-Z0-9=_-]+`, at most 255 bytes; sha256 and blake3
/// need 64 lower-case hex digits, sha512 128.
fn expected_valid(s: &str) -> bool {
    let Some((alg, enc)) = s.split_once(':') else {
        return false;
    };
    let components_ok = alg.split(['+', '.', '_', '-']).all(|c| {
        !c.is_empty()
            && c.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    });
    let encoded_ok = !enc.is_empty()
        && enc
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'=' || b == b'_' || b == b'-');
    let lower_hex = |n: usize| {
        enc.len() == n
            && enc
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let registered_ok = match alg {
        "sha256" | "blake3" => lower_hex(64),
        "sha512" => lower_hex(128),
        _ => true,
    };
    s.len() <= 255 && components_ok && encoded_ok && registered_ok
}

/// Checks one input.
pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let s: &str = &text;
    let parsed = Digest::parse(s);
    assert_eq!(
        parsed.is_ok(),
        expected_valid(s),
        "grammar disagreement on {s:?}: {parsed:?}"
    );
    let d = match parsed {
        Ok(d) => d,
        Err(e) => {
            super::assert_one_line(&e);
            return;
        }
    };
    assert_eq!(d.as_str(), s);
    assert_eq!(d.to_string(), s);
    assert_eq!(format!("{}:{}", d.algorithm_name(), d.encoded()), s);
    assert_eq!(s.parse::<Digest>().ok().as_ref(), Some(&d));
    let json = serde_json::to_string(&d).expect("a digest serializes");
    assert_eq!(
        serde_json::from_str::<Digest>(&json).ok().as_ref(),
        Some(&d)
    );
    assert_eq!(d.is_verifiable(), d.algorithm() != Algorithm::Unregistered);
    if let Some(name) = d.algorithm().name() {
        assert_eq!(name, d.algorithm_name());
    }

    let path = d.blob_path();
    assert!(path.is_relative(), "{path:?} is not relative");
    let parts: Vec<_> = path.components().collect();
    assert_eq!(parts.len(), 3, "{path:?} is not blobs/<alg>/<encoded>");
    for part in &parts {
        assert!(
            matches!(part, Component::Normal(_)),
            "{path:?} has a component {part:?}"
        );
    }
    assert_eq!(parts[0], Component::Normal("blobs".as_ref()));
    assert_eq!(parts[1], Component::Normal(d.algorithm_name().as_ref()));
    assert_eq!(parts[2], Component::Normal(d.encoded().as_ref()));
}
