//! `ferry-publish root remove-key --role R --key PUB|KEYID…`: remove keys
//! from a role of the draft.

use std::path::Path;

use anyhow::bail;
use manifests::KeyId;

use super::{draft_path, load_draft, read_public_key, save_role_edit};
use crate::cli::RootKeyArgs;

pub fn run(args: &RootKeyArgs) -> anyhow::Result<()> {
    let path = draft_path(&args.draft);
    let (mut root, _) = load_draft(&path)?;
    for key in &args.key {
        // A key id is how an operator may only know a lost key.
        let id = match key.parse::<KeyId>() {
            Ok(id) => id,
            Err(_) => read_public_key(Path::new(key))?.0,
        };
        let spec = root.roles.get_mut(args.role);
        let before = spec.keys.len();
        spec.keys.retain(|k| *k != id.to_string());
        if spec.keys.len() == before {
            bail!(
                "key {id} is not in the {} role of the draft (it has: {})",
                args.role,
                spec.keys.join(", ")
            );
        }
        outln!("{} role: key {id} removed", args.role);
    }
    save_role_edit(&path, &mut root, args)
}
