#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| trackside_fuzz::any_topic(data));
