//! Fuzz target: the JSON Lines decoder and both message parsers on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chat_core::fuzz::codec(data));
