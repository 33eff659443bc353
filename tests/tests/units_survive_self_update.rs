//! The promise: the systemd units `ferry install-units` writes keep
//! updating the node however ferry itself is installed and configured.
//!
//! - A ferry shipped inside its own release and started from there is run
//!   by the unit through `current`, never through `releases/<v>/`: two
//!   self-updates later that directory is pruned, and a unit naming it
//!   would silently stop updating the fleet.
//! - The sandbox is read-only except what the configuration says ferry
//!   writes (ProtectSystem=strict with ReadWritePaths=), so the README's
//!   in-place example can write its targets, and nothing else opens.
//! - The timeout outlasts the longest wait ferry allows itself, a held
//!   lock (exit 75) is not a failure, and `systemd-analyze security` rates
//!   the service 4.0 or better.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

use ferry_tests::binaries::ferry;
use ferry_tests::fixtures::Workspace;
use ferry_tests::run::{run, Output};

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|ci| ci == "true")
}

/// `BINARY --config CONFIG install-units --dir DIR`, started by that path.
fn install_units(binary: &Path, config: &Path, dir: &Path) -> Output {
    run(Command::new(binary)
        .arg("--config")
        .arg(config)
        .args(["install-units", "--dir"])
        .arg(dir))
}

fn service(dir: &Path) -> String {
    fs::read_to_string(dir.join("ferry-update.service")).unwrap()
}

#[test]
fn a_ferry_inside_its_release_is_run_through_current() {
    let ws = Workspace::new();
    let node = ws.node("self-updating");
    let bin = node.root.join("releases/0.1.0/bin");
    fs::create_dir_all(&bin).unwrap();
    fs::copy(ferry(), bin.join("ferry")).unwrap();
    symlink("releases/0.1.0", node.root.join("current")).unwrap();
    let stable = node.root.join("current/bin/ferry");
    let expected = format!("\nExecStart={} --config ", stable.display());

    // Started by its resolved release path: rewritten, and said so.
    let units = ws.dir.join("units-resolved");
    let out = install_units(&bin.join("ferry"), &node.config, &units);
    out.assert_success()
        .assert_stdout_contains("follows updates");
    let written = service(&units);
    assert!(
        written.contains(&expected),
        "no {expected:?} in:\n{written}"
    );
    assert!(!written.contains("releases/0.1.0"), "{written}");

    // Started through `current`: that path, as invoked.
    let units = ws.dir.join("units-current");
    install_units(&stable, &node.config, &units).assert_success();
    let through_current = service(&units);
    assert!(through_current.contains(&expected), "{through_current}");
}

#[test]
fn the_sandbox_opens_the_install_root_and_state_dir_only() {
    let ws = Workspace::new();
    let node = ws.node("symlink-mode");
    let units = ws.dir.join("units");
    install_units(ferry(), &node.config, &units).assert_success();
    let written = service(&units);
    let expected = format!(
        "\nProtectSystem=strict\nReadWritePaths=-{} -{}\n",
        node.root.display(),
        node.state_dir.display()
    );
    assert!(
        written.contains(&expected),
        "no {expected:?} in:\n{written}"
    );
    // No [coordination]: nothing to wait for, an hour for the run.
    assert!(written.contains("\nTimeoutStartSec=3600\n"), "{written}");
    assert!(written.contains("\nSuccessExitStatus=75\n"), "{written}");
}

#[test]
fn the_readme_in_place_example_can_write_its_targets() {
    let ws = Workspace::new();
    let node = ws.node("in-place");
    // The README's in-place [install] section, on this node's repository,
    // and a coordination wait longer than the default.
    let config = fs::read_to_string(&node.config).unwrap();
    let repository = &config[..config.find("\n[install]").unwrap()];
    let config = format!(
        "{repository}\n[install]\nmode = \"in-place\"\nroot = \"/\"\nstate_dir = \"/var/lib/ferry\"\n\
         targets = [\"/usr/local/bin/mydb\", \"/etc/mydb/\"]\n\n\
         [coordination]\nkind = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\"]\nprefix = \"/ferry/test\"\nwait_timeout_seconds = 7200\n"
    );
    let path = ws.dir.join("in-place.toml");
    fs::write(&path, config).unwrap();
    let units = ws.dir.join("units");
    install_units(ferry(), &path, &units).assert_success();
    let written = service(&units);
    assert!(
        written.contains(
            "\nProtectSystem=strict\nReadWritePaths=-/etc/mydb -/usr/local/bin -/var/lib/ferry\n"
        ),
        "{written}"
    );
    assert!(!written.contains("ReadWritePaths=-/ "), "{written}");
    assert!(written.contains("\nTimeoutStartSec=10800\n"), "{written}");
}

#[test]
fn systemd_analyze_security_rates_the_service_4_or_better() {
    let ws = Workspace::new();
    let node = ws.node("rated");
    let units = ws.dir.join("units");
    install_units(ferry(), &node.config, &units).assert_success();
    let rated = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(units.join("ferry-update.service"))
        .output();
    let rated = match rated {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !ci() => {
            eprintln!("note: systemd-analyze is not installed: the unit was not rated");
            return;
        }
        Err(e) => panic!("cannot run systemd-analyze (CI=true needs it): {e}"),
    };
    let text = String::from_utf8_lossy(&rated.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| {
            panic!(
                "no rating in:\n{text}\n{}",
                String::from_utf8_lossy(&rated.stderr)
            )
        });
    let score: f64 = line
        .split(": ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score in {line:?}"));
    println!("{line}");
    assert!(score <= 4.0, "{line}\n{text}");
}
