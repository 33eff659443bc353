//! `ferry-publish root sign --key SECRET…`: add this key holder's signature
//! block to the draft. Signing twice with one key changes nothing (a key
//! counts once anyway), so every holder can run it without coordinating.

use std::fs;

use anyhow::Context;
use manifests::signature::split_signature_blocks;
use manifests::TrustedKeys;

use super::{draft_path, draft_signature_path, load_draft, root_file, write_atomic};
use crate::cli::RootSignArgs;
use crate::keys::SigningKeys;
use crate::publication;

pub fn run(args: &RootSignArgs) -> anyhow::Result<()> {
    let path = draft_path(&args.draft);
    let (root, bytes) = load_draft(&path)?;
    root.validate()
        .with_context(|| format!("{} is not a valid root", path.display()))?;
    let file = root_file(&root);
    let keys = SigningKeys::load(&args.key, args.password_file.as_deref())?;
    let signature_path = draft_signature_path(&path);
    let existing = match fs::read(&signature_path) {
        Ok(text) => split_signature_blocks(&file, &text)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).context(format!("cannot read {}", signature_path.display())),
    };
    let timestamp = publication::publication_time()?.as_second();
    let mut out = String::new();
    for block in &existing {
        // A block by one of the keys signing now is kept only if it is a
        // valid signature of these bytes; otherwise it is replaced.
        let Some(key) = keys.iter().find(|k| k.id() == block.key_id) else {
            out.push_str(&block.text);
            continue;
        };
        let mut single = TrustedKeys::new();
        single.add_text(&key.public_key_text(), "draft signer")?;
        if single.verify(&file, &bytes, block.text.as_bytes()).is_ok() {
            out.push_str(&block.text);
        }
    }
    for key in keys.iter() {
        let mut single = TrustedKeys::new();
        single.add_text(&key.public_key_text(), "draft signer")?;
        if single.verify(&file, &bytes, out.as_bytes()).is_ok() {
            outln!("{file}: already signed by key {}", key.id());
            continue;
        }
        let block = key.sign(&bytes, &file, timestamp)?;
        out.push_str(std::str::from_utf8(&block).expect("minisign writes text"));
        outln!("{file}: signed by key {}", key.id());
    }
    write_atomic(&signature_path, out.as_bytes())
}
