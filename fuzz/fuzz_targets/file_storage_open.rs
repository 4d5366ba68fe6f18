//! Fuzz target `file_storage_open`: see `tinyraft_tests::fuzz::file_storage_open` for the input format and the checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tinyraft_tests::fuzz::file_storage_open(data);
});
