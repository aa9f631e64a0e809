//! Fuzz target: the IRC line parser and writer, and an IRC adapter, on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chat_core::fuzz::irc_codec(data));
