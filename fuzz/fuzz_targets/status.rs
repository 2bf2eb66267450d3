#![no_main]

libfuzzer_sys::fuzz_target!(|payload: &[u8]| trackside_fuzz::status(payload));
