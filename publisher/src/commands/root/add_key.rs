//! `ferry-publish root add-key --role R --key PUB…`: add keys to a role of
//! the draft.

use super::{draft_path, load_draft, read_public_key, save_role_edit};
use crate::cli::RootKeyArgs;

pub fn run(args: &RootKeyArgs) -> anyhow::Result<()> {
    let path = draft_path(&args.draft);
    let (mut root, _) = load_draft(&path)?;
    for key in &args.key {
        let (id, base64) = read_public_key(std::path::Path::new(key))?;
        root.keys.insert(id.to_string(), base64);
        let spec = root.roles.get_mut(args.role);
        if !spec.keys.contains(&id.to_string()) {
            spec.keys.push(id.to_string());
        }
        outln!("{} role: key {id} added", args.role);
    }
    save_role_edit(&path, &mut root, args)
}
