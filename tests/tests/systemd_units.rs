//! `ferry install-units` writes units systemd accepts, with this node's
//! paths in them, and does not overwrite an edited unit unasked.
//!
//! `systemd-analyze verify` parses the units as systemd would (unknown
//! keys, bad values, a missing executable) and works without systemd
//! running as PID 1. Without it a developer's run prints a note and
//! passes; under CI (`CI=true`) its absence fails the test.

use std::path::Path;
use std::process::Command;

use ferry_tests::binaries::ferry;
use ferry_tests::run::run;

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|ci| ci == "true")
}

fn install_units(dir: &Path, config: &Path, extra: &[&str]) -> ferry_tests::run::Output {
    run(Command::new(ferry())
        .arg("--config")
        .arg(config)
        .args(["install-units", "--dir"])
        .arg(dir)
        .args(extra))
}

#[test]
fn installed_units_pass_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    // No configuration file exists: installing units must not need one.
    let config = dir.path().join("etc/ferry.toml");
    let units = dir.path().join("units");
    install_units(&units, &config, &[])
        .assert_success()
        .assert_stdout_contains("systemctl daemon-reload")
        .assert_stdout_contains("systemctl enable --now ferry-update.timer");

    let service = std::fs::read_to_string(units.join("ferry-update.service")).unwrap();
    let expected = format!(
        "\nExecStart={} --config {} apply --unattended\n",
        ferry().display(),
        config.display()
    );
    assert!(
        service.contains(&expected),
        "no {expected:?} in:\n{service}"
    );
    for placeholder in ["@FERRY@", "@CONFIG@", "@TIMEOUT@", "@SANDBOX@"] {
        assert!(
            !service.contains(placeholder),
            "{placeholder} is left:\n{service}"
        );
    }
    // No configuration: the default coordination wait plus an hour, and
    // the coarse sandbox (the writable paths are not known).
    assert!(service.contains("\nTimeoutStartSec=7200\n"), "{service}");
    assert!(service.contains("\nProtectSystem=full\n"), "{service}");
    assert!(service.contains("\nSuccessExitStatus=75\n"), "{service}");
    let timer = std::fs::read_to_string(units.join("ferry-update.timer")).unwrap();
    assert!(timer.contains("\nOnCalendar=hourly\n"), "{timer}");

    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(units.join("ferry-update.service"))
        .arg(units.join("ferry-update.timer"))
        .output();
    let verify = match verify {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !ci() => {
            eprintln!("note: systemd-analyze is not installed: the units were not verified");
            return;
        }
        Err(e) => panic!("cannot run systemd-analyze (CI=true needs it): {e}"),
    };
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success(),
        "systemd-analyze verify rejected the units ({}):\n{stderr}",
        verify.status
    );
    // verify exits 0 on some warnings; any line about our units is a defect.
    let complaints: Vec<_> = stderr
        .lines()
        .filter(|line| line.contains("ferry-update"))
        .collect();
    assert!(
        complaints.is_empty(),
        "systemd-analyze complained:\n{stderr}"
    );
}

#[test]
fn an_edited_unit_is_replaced_only_with_force() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferry.toml");
    let units = dir.path().join("units");
    install_units(&units, &config, &["--ferry-path", "/usr/local/bin/ferry"]).assert_success();
    let service_path = units.join("ferry-update.service");
    let timer_path = units.join("ferry-update.timer");
    let written = std::fs::read_to_string(&service_path).unwrap();
    assert!(written.contains("ExecStart=/usr/local/bin/ferry --config "));

    // Same inputs again: nothing changes, nothing is refused.
    install_units(&units, &config, &["--ferry-path", "/usr/local/bin/ferry"])
        .assert_success()
        .assert_stdout_contains("unchanged");

    let edited = written.replace("Nice=10", "Nice=5");
    std::fs::write(&service_path, &edited).unwrap();
    std::fs::remove_file(&timer_path).unwrap();
    install_units(&units, &config, &["--ferry-path", "/usr/local/bin/ferry"])
        .assert_code(1)
        .assert_stderr_contains("refusing to overwrite")
        .assert_stderr_contains("--force");
    assert_eq!(std::fs::read_to_string(&service_path).unwrap(), edited);
    assert!(
        !timer_path.exists(),
        "a refused install still wrote the timer"
    );

    install_units(
        &units,
        &config,
        &["--ferry-path", "/usr/local/bin/ferry", "--force"],
    )
    .assert_success();
    assert_eq!(std::fs::read_to_string(&service_path).unwrap(), written);
    assert!(timer_path.exists());
}
