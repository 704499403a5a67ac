//! cargo-fuzz target `revision`: `rune::model::fuzz::revision` on libFuzzer's inputs (the
//! same harness `tests/fuzz/` drives on stable; see fuzz/README.md).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rune::model::fuzz::revision(data);
});
