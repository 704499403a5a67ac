//! cargo-fuzz target `endpoints`: `rune::model::fuzz::endpoints` on libFuzzer's inputs (the
//! same harness `tests/fuzz/` drives on stable; see fuzz/README.md).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rune::model::fuzz::endpoints(data);
});
