//! The `[service]` command lines a ferry node uses to run the demo service,
//! written once for the tests, `cargo xtask demo` and `cargo xtask bench
//! lifecycle`.
//!
//! They are what an operator would put in `ferry.toml` without systemd:
//! stop the running instance by its pid file and wait until it has exited
//! (it finishes its requests first), then start one detached (`setsid`,
//! output to a log, stdin closed) so that it outlives the command.

use std::path::Path;

/// `restart_command`: stop the instance in `pid_file` (if any), start the
/// one at `release_root/current` on `listen`.
pub fn restart_command(release_root: &Path, listen: &str, pid_file: &Path, log: &Path) -> String {
    format!(
        "{}; {}",
        stop_by_pid_file_if_running(&pid_file.display().to_string()),
        start(
            &release_root.join("current").display().to_string(),
            listen,
            &pid_file.display().to_string(),
            log
        )
    )
}

/// `reload_command` of the reload strategy: SIGHUP to the instance in
/// `pid_file`, which then reads `release_root/current/demo.toml` again;
/// when none runs, one is started that follows `current` (what `systemctl
/// reload-or-restart` does), so the first install needs nothing else.
pub fn reload_command(release_root: &Path, listen: &str, pid_file: &Path, log: &Path) -> String {
    let pid = pid_file.display().to_string();
    let current = release_root.join("current").display().to_string();
    let start = start_with(
        &current,
        &format!("--listen {listen} --pid-file {pid} --release-dir {current}"),
        log,
    );
    // `start` ends with `&`, which also ends the `else` branch.
    format!(
        "pid=$(cat {pid} 2>/dev/null); if [ -n \"$pid\" ] && kill -HUP $pid 2>/dev/null; then :; else {start} fi"
    )
}

/// `start_command` and `stop_command` of the blue-green strategy: one
/// instance per release, its pid in `pid_dir/demo-<version>.pid` (ferry
/// fills `{release_dir}` and `{version}`).
pub fn blue_green_commands(listen: &str, pid_dir: &Path, log: &Path) -> (String, String) {
    let pid = format!("{}/demo-{{version}}.pid", pid_dir.display());
    let start = start("{release_dir}", listen, &pid, log);
    let stop = format!(
        "pid=$(cat {pid}) && kill $pid && while kill -0 $pid 2>/dev/null; do sleep 0.02; done"
    );
    (start, stop)
}

fn stop_by_pid_file_if_running(pid: &str) -> String {
    format!(
        "pid=$(cat {pid} 2>/dev/null); if [ -n \"$pid\" ]; then kill $pid; while kill -0 $pid 2>/dev/null; do sleep 0.02; done; fi"
    )
}

fn start(release: &str, listen: &str, pid: &str, log: &Path) -> String {
    start_with(release, &format!("--listen {listen} --pid-file {pid}"), log)
}

fn start_with(release: &str, args: &str, log: &Path) -> String {
    format!(
        "setsid {release}/bin/demo-service {args} >> {} 2>&1 < /dev/null &",
        log.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commands_name_the_pid_file_listen_address_and_release() {
        let restart = restart_command(
            Path::new("/srv/app"),
            "127.0.0.1:8080",
            Path::new("/run/demo.pid"),
            Path::new("/var/log/demo.log"),
        );
        assert!(restart.starts_with("pid=$(cat /run/demo.pid 2>/dev/null);"));
        assert!(restart.contains(
            "setsid /srv/app/current/bin/demo-service --listen 127.0.0.1:8080 --pid-file /run/demo.pid >> /var/log/demo.log"
        ));
        let (start, stop) =
            blue_green_commands("127.0.0.1:8080", Path::new("/run/demo"), Path::new("/l"));
        assert!(start.starts_with("setsid {release_dir}/bin/demo-service --listen 127.0.0.1:8080 --pid-file /run/demo/demo-{version}.pid"));
        assert!(stop.starts_with("pid=$(cat /run/demo/demo-{version}.pid) && kill $pid"));
        let reload = reload_command(
            Path::new("/srv/app"),
            "127.0.0.1:8080",
            Path::new("/run/demo.pid"),
            Path::new("/l"),
        );
        assert!(reload.contains("kill -HUP $pid"), "{reload}");
        assert!(
            reload.contains("--release-dir /srv/app/current >> /l"),
            "{reload}"
        );
    }
}
