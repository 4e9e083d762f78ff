//! cargo-fuzz target `config`: see `portcullis_fuzz::check_config` for the properties.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portcullis_fuzz::check_config(data));
