//! Fuzz target `wopi_src`: the properties are in `fuzz/properties.rs`, shared with
//! `tests/fuzz_seeds.rs`, which replays the committed seeds on stable Rust.
#![no_main]

// Each target uses one of the shared checks.
#[allow(dead_code)]
#[path = "../properties.rs"]
mod properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| properties::wopi_src(data));
