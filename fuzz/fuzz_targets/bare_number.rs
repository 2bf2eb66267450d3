#![no_main]

libfuzzer_sys::fuzz_target!(|payload: &[u8]| trackside_fuzz::bare_number(payload));
