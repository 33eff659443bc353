//! `ferry-publish root init`: the draft of the next root.

use std::collections::BTreeMap;

use anyhow::bail;
use manifests::root::{RoleSpec, Roles, ROOT_TYPE};
use manifests::{Role, Root, FORMAT_VERSION};

use super::{draft_path, read_public_key, root_file, save_draft};
use crate::cli::RootInitArgs;
use crate::publication;
use crate::repository::Repository;
use crate::root_chain::RootChain;

pub fn run(args: &RootInitArgs) -> anyhow::Result<()> {
    let repo = Repository::create(&args.draft.repo)?;
    let path = draft_path(&args.draft);
    if path.exists() && !args.force {
        bail!(
            "{} already exists: edit it with `root add-key`/`root remove-key`, or pass --force to start over",
            path.display()
        );
    }
    let current = RootChain::load(&repo, None)?;
    let created = publication::publication_time()?;
    let expires = publication::expiry(created, args.expires_in)?;
    let mut root = match current.as_ref().and_then(|c| c.current().root().cloned()) {
        // The next root starts as a copy of the current one.
        Some(current) => Root {
            version: current.version + 1,
            expires,
            ..current
        },
        None => {
            if args.key.is_empty() {
                bail!("a first root needs its keys: pass --key PUBLIC_KEY (repeatable)");
            }
            let empty = RoleSpec {
                keys: Vec::new(),
                threshold: 1,
            };
            Root {
                format: FORMAT_VERSION,
                kind: ROOT_TYPE.into(),
                version: 1,
                expires,
                keys: BTreeMap::new(),
                roles: Roles {
                    root: empty.clone(),
                    index: empty.clone(),
                    manifests: empty,
                },
            }
        }
    };
    if !args.key.is_empty() {
        root.keys.clear();
        let mut ids = Vec::new();
        for path in &args.key {
            let (id, base64) = read_public_key(path)?;
            root.keys.insert(id.to_string(), base64);
            ids.push(id.to_string());
        }
        for role in Role::ALL {
            root.roles.get_mut(role).keys = ids.clone();
        }
    }
    for (role, threshold) in [
        (Role::Root, args.threshold_root),
        (Role::Index, args.threshold_index),
        (Role::Manifests, args.threshold_manifests),
    ] {
        if let Some(t) = threshold {
            root.roles.get_mut(role).threshold = t;
        }
    }
    save_draft(&path, &mut root)?;
    outln!(
        "wrote the draft of root version {} ({}) to {}; expires {}",
        root.version,
        root_file(&root),
        path.display(),
        root.expires
    );
    outln!(
        "next: `ferry-publish root sign --key SECRET_KEY` by {} of its root keys{}, then `ferry-publish root rotate`",
        root.roles.root.threshold,
        if root.version > 1 {
            " and by enough root keys of the current root"
        } else {
            ""
        }
    );
    Ok(())
}
