//! Fuzz target `message_decode_step`: see `tinyraft_tests::fuzz::message_decode_step` for the input format and the checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tinyraft_tests::fuzz::message_decode_step(data);
});
