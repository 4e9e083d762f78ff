//! cargo-fuzz target `session_cookie`: see `portcullis_fuzz::check_session_cookie` for the properties.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portcullis_fuzz::check_session_cookie(data));
