//! `roots/<N>.json` is parsed once a threshold of the previous root's keys
//! vouched for it, but the parser and validator still must not panic on
//! anything, and a root that validates must give every role a usable key
//! set. A self-signature that checks (the seeds hold a real one) must bind
//! the exact bytes: the same signature over the document with any one byte
//! changed must fail.
#![no_main]

use libfuzzer_sys::fuzz_target;
use manifests::{Role, Root, VerifiedRoot};

fuzz_target!(|data: &[u8]| {
    if let Ok(root) = serde_json::from_slice::<Root>(data) {
        if root.validate().is_ok() {
            for role in [Role::Root, Role::Index, Role::Manifests] {
                let keys = root.role_keys(role).expect("a validated root has every role");
                assert!(keys.threshold() >= 1 && keys.threshold() <= keys.keys().len());
            }
        }
    }
    // Split the input into a document and a signature file at the first
    // NUL: both halves come from the network in a real fetch.
    let (document, signature) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &b""[..]),
    };
    if VerifiedRoot::verify_self_signed(document.to_vec(), signature.to_vec()).is_ok() {
        let mut changed = document.to_vec();
        let at = signature.len() % changed.len();
        changed[at] ^= 0x01;
        assert!(
            VerifiedRoot::verify_self_signed(changed, signature.to_vec()).is_err(),
            "a root signature still checked after byte {at} of the root changed"
        );
    }
});
