//! The delta encodings on real machine code, and interoperability of
//! `zstd-patch-from` patches with the real `zstd` CLI.
// A test reports to the harness; a closed stdout there is no operation to spare.
#![allow(clippy::disallowed_macros)]

mod common;

use std::fs;

use common::*;
use delta::decode::apply;
use delta::encode::{make_delta, window_log_for, DeltaSettings, PairBuffer};
use delta::MAX_WINDOW_LOG;
use manifests::manifest::DeltaAlgorithm;

fn settings(level: i32, algorithms: &'static [DeltaAlgorithm]) -> DeltaSettings {
    DeltaSettings {
        level,
        max_window_log: MAX_WINDOW_LOG,
        algorithms,
    }
}

fn pair(base: &[u8], target: &[u8]) -> PairBuffer {
    PairBuffer::new([base, target].concat(), base.len())
}

#[test]
fn every_algorithm_round_trips_a_real_binary_and_its_next_build() {
    let base = real_binary();
    let target = next_build(&base, 1);
    let pair = pair(&base, &target);
    let full = zstd::bulk::compress(&target, 19).unwrap().len();
    let mut sizes = Vec::new();
    for algorithm in DeltaSettings::ALL {
        let patch = make_delta(&pair, &settings(19, std::slice::from_ref(algorithm)))
            .unwrap()
            .unwrap();
        assert_eq!(patch.algorithm, *algorithm);
        let rebuilt = apply(*algorithm, &base, &patch.bytes, target.len() as u64 + 1).unwrap();
        assert!(
            rebuilt == target,
            "{algorithm:?} does not rebuild the target"
        );
        // Nothing like the base rebuilds the target from this patch.
        let other_base = next_build(&base, 2);
        let wrong = apply(
            *algorithm,
            &other_base,
            &patch.bytes,
            target.len() as u64 + 1,
        );
        assert!(wrong.map_or(true, |w| w != target), "{algorithm:?}");
        assert!(
            patch.bytes.len() * 5 < full,
            "{algorithm:?}: {} bytes against {full} for the whole file",
            patch.bytes.len()
        );
        sizes.push((delta::name(*algorithm), patch.bytes.len()));
    }
    eprintln!(
        "tar ({} bytes) -> next build: zstd -19 of the target {full} bytes, patches {sizes:?}",
        target.len()
    );
    let chosen = make_delta(&pair, &settings(19, DeltaSettings::ALL))
        .unwrap()
        .unwrap();
    assert_eq!(
        chosen.bytes.len(),
        sizes.iter().map(|(_, s)| *s).min().unwrap()
    );
}

/// `zstd -d --patch-from=BASE --long=31 PATCH -o OUT`, then OUT == target.
fn cli_decodes(cli: &std::path::Path, base: &[u8], target: &[u8], patch: &[u8]) {
    let scratch = Scratch::new();
    let (base_file, patch_file, out_file) = (
        scratch.path("base"),
        scratch.path("patch.zst"),
        scratch.path("out"),
    );
    fs::write(&base_file, base).unwrap();
    fs::write(&patch_file, patch).unwrap();
    let mut patch_from = std::ffi::OsString::from("--patch-from=");
    patch_from.push(&base_file);
    run(std::process::Command::new(cli)
        .args(["-q", "-d"])
        .arg(patch_from)
        .arg("--long=31")
        .arg(&patch_file)
        .arg("-o")
        .arg(&out_file))
    .assert_success();
    assert!(
        fs::read(&out_file).unwrap() == target,
        "zstd decoded something else"
    );
}

#[test]
fn the_zstd_cli_decodes_patch_from_deltas() {
    let Some(cli) = zstd_cli() else { return };
    let base = real_binary();
    let target = next_build(&base, 3);
    let only_patch_from = settings(19, &[DeltaAlgorithm::ZstdPatchFrom]);
    let patch = make_delta(&pair(&base, &target), &only_patch_from)
        .unwrap()
        .unwrap();
    cli_decodes(&cli, &base, &target, &patch.bytes);
}

/// Base and target spanning more than 128 MiB: the window goes past zstd's
/// default decoding limit (2^27), so this is the case `--long=31` is for,
/// and the patch must still reach back to the start of the base.
#[test]
fn the_zstd_cli_decodes_patch_from_deltas_with_a_window_above_128_mib() {
    let Some(cli) = zstd_cli() else { return };
    let binary = real_binary();
    let copies = (72 << 20) / binary.len() + 1;
    let mut base = Vec::with_capacity(copies * binary.len());
    for i in 0..copies {
        // Each copy different, so matches must come from the right place.
        base.extend_from_slice(&next_build(&binary, 1 + (i % 7) as u32));
    }
    let mut target = base.clone();
    target.splice(1000..1000, noise(4096, 5));
    target.rotate_left(base.len() / 2);
    let span = (base.len() + target.len()) as u64;
    assert!(window_log_for(span, MAX_WINDOW_LOG) > 27);
    // Level 3: this test is about the window, not the search effort.
    let patch = make_delta(
        &pair(&base, &target),
        &settings(3, &[DeltaAlgorithm::ZstdPatchFrom]),
    )
    .unwrap()
    .unwrap();
    assert!(
        patch.bytes.len() < target.len() / 50,
        "{} bytes: the far half of the base was out of reach",
        patch.bytes.len()
    );
    cli_decodes(&cli, &base, &target, &patch.bytes);
}
