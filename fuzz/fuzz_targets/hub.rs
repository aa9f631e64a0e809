//! Fuzz target: the hub driven by arbitrary operations from several connections, with time
//! advancing, checking its invariants after every step.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chat_core::fuzz::hub(data));
