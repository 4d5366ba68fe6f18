//! Fuzz target `sim_schedule`: see `tinyraft_tests::fuzz::sim_schedule` for the input format and the checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tinyraft_tests::fuzz::sim_schedule(data);
});
