//! cargo-fuzz target `redirect`: see `portcullis_fuzz::check_redirect` for the properties.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portcullis_fuzz::check_redirect(data));
