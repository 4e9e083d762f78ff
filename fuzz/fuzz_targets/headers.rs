//! cargo-fuzz target `headers`: see `portcullis_fuzz::check_headers` for the properties.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portcullis_fuzz::check_headers(data));
