//! Signature files come straight from the network, before anything is
//! trusted: decoding arbitrary `.minisig` text against a trusted key returns
//! an error (or, for the real signature, success), never a panic, and never
//! accepts a signature over data it was not made for.
#![no_main]

use libfuzzer_sys::fuzz_target;
use manifests::TrustedKeys;

/// A fixed public key (not secret: this is only a parser target).
const PUBLIC_KEY: &str = "RWTLMfdPihdpN70JC/T+9hRnK9Y4v1GkEv7QmhBL9aJq2+rSLOIbfP02";

fuzz_target!(|data: &[u8]| {
    let mut keys = TrustedKeys::new();
    keys.add_text(PUBLIC_KEY, "fuzz").expect("the fixed key parses");
    // Whatever the signature text is, it cannot have been made by our key
    // over this data: acceptance would be a forgery.
    let verdict = keys.verify("fuzz", b"ferry fuzz payload", data);
    assert!(verdict.is_err(), "accepted a fuzzer-made signature");
});
