//! `cargo xtask publish`: ferry ships itself with ferry.
//!
//! The release tree is what a node running ferry would install: `bin/ferry`
//! (the static applier with the coordinator), `bin/ferry-node` (the same
//! without it), `bin/ferry-x509` and `bin/ferry-publish`. It is published with the
//! freshly built `ferry-publish`, so every release of ferry also exercises
//! the publisher on real binaries. The key password, if any, comes from the
//! environment (FERRY_KEY_PASSWORD), which is passed through untouched.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::{cmd, dist};

#[derive(clap::Args)]
pub struct Args {
    /// Repository directory to publish into (created if missing).
    #[arg(long, value_name = "DIR")]
    repo: PathBuf,
    /// minisign secret key file.
    #[arg(long, value_name = "KEY")]
    key: PathBuf,
    /// Version to publish (semver, without a leading `v`).
    #[arg(long, value_name = "V")]
    version: String,
    /// Channel to publish on.
    #[arg(long, value_name = "C", default_value = "stable")]
    channel: String,
    /// Release notes stored in the manifest.
    #[arg(long, value_name = "TEXT")]
    notes: Option<String>,
}

pub fn run(args: &Args) -> Result<()> {
    let built = dist::run(None)?;
    let stage = tempfile::Builder::new()
        .prefix("ferry-stage-")
        .tempdir()
        .context("cannot create a staging directory")?;
    let bin = stage.path().join("bin");
    std::fs::create_dir_all(&bin)?;
    place(&built.ferry, &bin.join("ferry"))?;
    place(&built.ferry_node, &bin.join("ferry-node"))?;
    place(&built.ferry_x509, &bin.join("ferry-x509"))?;
    place(&built.ferry_publish, &bin.join("ferry-publish"))?;

    cmd::banner(&format!(
        "publish: ferry {} on channel {}",
        args.version, args.channel
    ));
    let mut release = Command::new(&built.ferry_publish);
    release
        .arg("release")
        .arg("--repo")
        .arg(&args.repo)
        .arg("--key")
        .arg(&args.key)
        .args(["--version", &args.version, "--channel", &args.channel]);
    if let Some(notes) = &args.notes {
        release.args(["--notes", notes]);
    }
    release.arg(stage.path());
    cmd::run(&mut release).context("ferry-publish refused the release (its message is above)")?;
    println!(
        "published ferry {} to {}",
        args.version,
        args.repo.display()
    );
    Ok(())
}

/// Copies a binary into the release tree as mode 0755, whatever umask says.
fn place(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to)
        .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}
