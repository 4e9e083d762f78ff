//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) through the same property
//! checks the cargo-fuzz targets run (`fuzz/src/lib.rs`, included here), on stable, in every
//! `cargo test`. Fuzzing itself needs nightly: see README, "Fuzzing".

use std::path::Path;

#[path = "../../fuzz/src/lib.rs"]
mod props;

#[test]
fn fuzz_corpus_replays_with_every_property_holding() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (target, check) in props::TARGETS {
        let dir = root.join(target);
        let mut inputs = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("corpus entry").path();
            let data = std::fs::read(&path).expect("corpus file");
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(
                outcome.is_ok(),
                "{target}: property failed on {}",
                path.display()
            );
            inputs += 1;
        }
        // An empty directory would make this test pass without checking anything.
        assert!(inputs >= 5, "{target}: only {inputs} corpus inputs");
    }
}
