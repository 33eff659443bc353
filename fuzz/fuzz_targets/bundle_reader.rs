//! An offline bundle is a tar from an untrusted place, read before anything
//! vouches for it (`ferry apply --bundle`). Whatever the bytes, the reader
//! must not panic or allocate without bound, and whatever it accepts must
//! be safe to serve: every path a safe relative path of the repository
//! layout, every file's byte range inside the input, no path twice.
#![no_main]

use std::collections::BTreeSet;
use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(contents) = ferry::bundle::validate_entries(data) else {
        return;
    };
    let mut seen = BTreeSet::new();
    for (path, span) in contents.files() {
        let end = span.offset.checked_add(span.size).expect("span overflows");
        assert!(
            end <= data.len() as u64,
            "{path:?} claims bytes {}..{end} of a {}-byte input",
            span.offset,
            data.len()
        );
        assert!(seen.insert(path.as_str().to_string()), "{path:?} twice");
    }
    for dir in contents.directories() {
        assert!(seen.insert(dir.as_str().to_string()), "{dir:?} twice");
    }
    for path in &seen {
        for component in Path::new(path).components() {
            assert!(
                matches!(component, Component::Normal(_)),
                "{path:?} accepted with component {component:?}"
            );
        }
    }
});
