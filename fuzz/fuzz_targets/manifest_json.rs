//! A release manifest is parsed only after its signature verified, but a
//! compromised or buggy publisher still must not crash a node: parsing and
//! validating arbitrary bytes returns a value or an error, never a panic,
//! and a manifest that validates has only safe paths.
#![no_main]

use libfuzzer_sys::fuzz_target;
use manifests::Manifest;

fuzz_target!(|data: &[u8]| {
    let Ok(manifest) = serde_json::from_slice::<Manifest>(data) else {
        return;
    };
    if manifest.validate().is_ok() {
        for entry in &manifest.files {
            let path = entry.path.as_str();
            assert!(!path.starts_with('/'), "absolute path validated: {path}");
            assert!(
                !path.split('/').any(|c| c == ".." || c == "." || c.is_empty()),
                "unsafe component validated: {path}"
            );
        }
        // A validated manifest must survive its own round trip.
        let text = serde_json::to_vec(&manifest).expect("serialises");
        let again: Manifest = serde_json::from_slice(&text).expect("re-parses");
        assert_eq!(again.files.len(), manifest.files.len());
    }
});
