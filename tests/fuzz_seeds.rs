//! Replays every committed fuzz seed (`fuzz/corpus/<target>/seed-*`) through the fuzz
//! targets' property checks (`fuzz/properties.rs`) on stable Rust, so CI checks the
//! properties without nightly or cargo-fuzz. `fuzz/run.sh` does the fuzzing itself.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

#[path = "../fuzz/properties.rs"]
mod properties;

use std::fs;
use std::path::{Path, PathBuf};

/// `fuzz/corpus/`.
fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus")
}

/// The committed seeds of `target`, sorted.
fn seeds(target: &str) -> Vec<PathBuf> {
    let dir = corpus().join(target);
    let mut seeds: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("seed-"))
        })
        .collect();
    seeds.sort();
    seeds
}

#[test]
fn every_seed_keeps_its_targets_properties() {
    for (target, check) in properties::TARGETS {
        let seeds = seeds(target);
        assert!(seeds.len() >= 3, "{target}: only {} seeds", seeds.len());
        for seed in seeds {
            let data = fs::read(&seed).unwrap_or_else(|e| panic!("{}: {e}", seed.display()));
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(
                outcome.is_ok(),
                "{target}: {} breaks a property",
                seed.display()
            );
        }
    }
}

#[test]
fn every_target_has_a_corpus_and_a_fuzz_binary() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let manifest = fs::read_to_string(root.join("Cargo.toml")).expect("fuzz/Cargo.toml");
    for (target, _) in properties::TARGETS {
        assert!(
            root.join("fuzz_targets")
                .join(format!("{target}.rs"))
                .is_file(),
            "fuzz/fuzz_targets/{target}.rs is missing"
        );
        assert!(
            manifest.contains(&format!("name = \"{target}\"")),
            "fuzz/Cargo.toml has no [[bin]] {target}"
        );
    }
    for entry in fs::read_dir(corpus()).expect("fuzz/corpus") {
        let name = entry.expect("corpus entry").file_name();
        let name = name.to_string_lossy();
        assert!(
            properties::TARGETS
                .iter()
                .any(|(target, _)| *target == name),
            "fuzz/corpus/{name} has no target in fuzz/properties.rs"
        );
    }
}
