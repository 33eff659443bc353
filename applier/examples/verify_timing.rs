//! Times the node's signature checks on a real repository, in process, for
//! `cargo xtask bench verify` (which builds the repository and prints the
//! table): the index and one manifest verified with 2-of-3 minisign
//! signatures (threshold check, pin check, parse and validation, as
//! `ferry apply` does), and index.json's detached CMS signature verified
//! against a pinned root through an intermediate.
//!
//! usage: verify_timing REPO VERSION ANCHOR_PEM RUNS PUB1 PUB2 PUB3
//! Prints one JSON object with the median and minimum of each, in µs.
// A benchmark helper whose one line of output xtask reads: no operation to spare.
#![allow(clippy::disallowed_macros)]

use std::path::Path;
use std::time::Instant;

use jiff::Timestamp;
use manifests::{RoleKeys, TrustedKeys, VerifiedIndex, VerifiedManifest};
use semver::Version;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [repo, version, anchor, runs, keys @ ..] = args.as_slice() else {
        eprintln!("usage: verify_timing REPO VERSION ANCHOR_PEM RUNS PUB1 PUB2 PUB3");
        std::process::exit(2);
    };
    let repo = Path::new(repo);
    let version: Version = version.parse().expect("a version");
    let runs: usize = runs.parse().expect("a run count");
    let read = |name: &str| std::fs::read(repo.join(name)).expect(name);

    let mut trusted = TrustedKeys::new();
    for key in keys {
        trusted.add_file(Path::new(key)).expect("a public key");
    }
    let role = RoleKeys::new("index", trusted, 2).expect("2-of-n");
    let index = read("index.json");
    let index_sig = read("index.json.minisig");
    let manifest_path = manifests::layout::manifest(&version);
    let manifest = read(&manifest_path);
    let manifest_sig = read(&format!("{manifest_path}.minisig"));

    let minisign = time(runs, || {
        let verified = VerifiedIndex::verify(&index, &index_sig, &role).expect("index verifies");
        let pin = verified
            .index()
            .channels
            .values()
            .find_map(|c| c.releases.get(&version.to_string()))
            .expect("the version is published");
        VerifiedManifest::verify_pinned(
            manifest.clone(),
            manifest_sig.clone(),
            &role,
            pin,
            &version,
        )
        .expect("manifest verifies");
    });

    let pem = std::fs::read(anchor).expect("anchor PEM");
    let policy = ferry_node::x509::X509Policy::from_pem(&pem, None).expect("anchor parses");
    let cms = read("index.json.p7s");
    let now = Timestamp::now();
    let x509 = time(runs, || {
        ferry_node::x509::verify_detached(&index, &cms, &policy, now).expect("CMS verifies");
    });
    println!(
        "{{\"runs\":{runs},\"minisign_2of3_median_us\":{:.1},\"minisign_2of3_min_us\":{:.1},\"cms_median_us\":{:.1},\"cms_min_us\":{:.1}}}",
        minisign.0, minisign.1, x509.0, x509.1
    );
}

/// (median, minimum) of `runs` timed calls, in microseconds, after one
/// untimed warm-up call.
fn time(runs: usize, mut f: impl FnMut()) -> (f64, f64) {
    f();
    let mut samples: Vec<f64> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    (samples[samples.len() / 2], samples[0])
}
