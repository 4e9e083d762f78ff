//! cargo-fuzz target `login_cookie`: see `portcullis_fuzz::check_login_cookie` for the properties.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portcullis_fuzz::check_login_cookie(data));
