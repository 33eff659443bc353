//! `ferry-publish keygen`: a new minisign key pair.

use std::process::ExitCode;

use crate::cli::KeygenArgs;
use crate::keys;

pub fn run(args: &KeygenArgs) -> anyhow::Result<ExitCode> {
    let password = args
        .password_file
        .as_deref()
        .map(keys::read_password_file)
        .transpose()?;
    let encrypted = password.is_some();
    let made = keys::generate(&args.secret_key, &args.public_key, password, args.force)?;
    let public_line = made.public_key_text.lines().nth(1).unwrap_or_default();
    outln!("key id: {}", made.id);
    outln!("public key: {public_line}");
    outln!(
        "secret key: {} ({}, mode 0600)",
        args.secret_key.display(),
        if encrypted {
            "encrypted"
        } else {
            "unencrypted"
        }
    );
    outln!("public key file: {}", args.public_key.display());
    if !encrypted {
        errln!(
            "note: the secret key is not encrypted; keep it off shared disks, or make an \
             encrypted one with --password-file"
        );
    }
    Ok(ExitCode::SUCCESS)
}
