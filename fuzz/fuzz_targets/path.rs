//! cargo-fuzz target `path`: see `portcullis_fuzz::check_path` for the properties.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portcullis_fuzz::check_path(data));
