//! Paths in manifests and bundles decide where a node writes as root: any
//! string SafeRelativePath accepts must stay below the install root, and a
//! symlink target check must never accept an escape.
#![no_main]

use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use manifests::safe_path::check_symlink_target;
use manifests::SafeRelativePath;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (path, target) = text.split_once('\0').unwrap_or((text, ""));
    let Ok(safe) = SafeRelativePath::new(path) else {
        return;
    };
    let joined = safe.under(Path::new("/root-of-install"));
    assert!(joined.starts_with("/root-of-install"));
    for component in Path::new(safe.as_str()).components() {
        assert!(
            matches!(component, Component::Normal(_)),
            "{path:?} validated with component {component:?}"
        );
    }
    if check_symlink_target(&safe, target).is_ok() {
        // Resolve the link lexically from its directory: it must not leave
        // the root.
        let mut depth: isize = safe.depth() as isize - 1;
        assert!(!target.starts_with('/'), "absolute target {target:?} accepted");
        for part in target.split('/') {
            match part {
                "" | "." => {}
                ".." => depth -= 1,
                _ => depth += 1,
            }
            assert!(depth >= 0, "{path:?} -> {target:?} escapes the root");
        }
    }
});
