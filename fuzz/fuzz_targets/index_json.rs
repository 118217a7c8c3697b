#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ocistore_fuzz::checks::index_json::check(data));
