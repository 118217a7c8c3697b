//! Fuzz targets of ocistore. Each target's check lives in [`checks`], which the main crate's
//! `tests/fuzz_corpus.rs` also compiles, to replay the committed corpus under `cargo test`.

pub mod checks;
