//! cargo-fuzz target `stored_service`: `rune::model::fuzz::stored_service` on libFuzzer's inputs (the
//! same harness `tests/fuzz/` drives on stable; see fuzz/README.md).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rune::model::fuzz::stored_service(data);
});
