//! The index is the first thing a node parses after a signature check:
//! arbitrary bytes parse and validate to a value or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use manifests::Index;

fuzz_target!(|data: &[u8]| {
    if data.len() as u64 > manifests::MAX_INDEX_BYTES {
        return;
    }
    let Ok(index) = serde_json::from_slice::<Index>(data) else {
        return;
    };
    if index.validate().is_ok() {
        for (channel, releases) in &index.channels {
            assert!(
                releases.releases.contains_key(&releases.latest.to_string()),
                "channel {channel} validated with a latest it does not list"
            );
        }
    }
});
