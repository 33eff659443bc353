//! A blue-green handover on a shared port drops no request.
//!
//! Two `demo-service` instances listen on one port with SO_REUSEPORT while
//! `demo-load` opens a new connection per request; the old instance gets
//! SIGTERM mid-load. Its graceful stop (drain the accept queue, close the
//! listener, finish what is in flight) and `net.ipv4.tcp_migrate_req=1`
//! (queued connections move to the sibling listener instead of being reset)
//! together must lose nothing: zero failed requests. All of it runs in a
//! network namespace of its own, so the test changes no sysctl of the
//! machine.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use ferry_tests::binaries::{demo_load, demo_service};
use ferry_tests::load::start_demo_load;
use ferry_tests::netns::NetworkNamespace;

/// A demo-service process, killed if the test ends without stopping it.
struct Instance {
    child: Option<Child>,
    log: PathBuf,
}

impl Instance {
    fn start(
        namespace: &NetworkNamespace,
        dir: &Path,
        version: &str,
        addr: SocketAddr,
    ) -> Instance {
        let release = dir.join(version);
        std::fs::create_dir_all(&release).unwrap();
        std::fs::write(
            release.join("demo.toml"),
            format!("version = \"{version}\"\n"),
        )
        .unwrap();
        let pid_file = release.join("demo.pid");
        let log = release.join("stderr.log");
        let child = namespace
            .command(demo_service())
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--release-dir")
            .arg(&release)
            .arg("--pid-file")
            .arg(&pid_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("start demo-service in the namespace");
        let mut instance = Instance {
            child: Some(child),
            log,
        };
        // The pid file appears once the instance listens.
        let started = Instant::now();
        while !pid_file.exists() {
            if let Some(status) = instance.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "demo-service {version} exited ({status}):\n{}",
                    instance.log()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "demo-service {version} did not listen within 10 s:\n{}",
                instance.log()
            );
            thread::sleep(Duration::from_millis(10));
        }
        instance
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the exit code (within `deadline`) and how long it took.
    fn terminate(&mut self, deadline: Duration) -> (Option<i32>, Duration) {
        let child = self.child.as_mut().unwrap();
        // `ip netns exec` execs the program: the child's pid is the service's.
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {} failed", child.id());
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return (status.code(), started.elapsed());
            }
            assert!(
                started.elapsed() < deadline,
                "demo-service did not stop within {deadline:?} of SIGTERM:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn sigterm_to_the_old_of_two_instances_on_one_port_drops_no_request() {
    // Declared first, dropped last: after every process inside it ended.
    let Some(namespace) =
        NetworkNamespace::create_or_skip("sigterm_to_the_old_of_two_instances_on_one_port")
    else {
        return;
    };
    namespace
        .sysctl("net.ipv4.tcp_migrate_req", "1")
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    // The namespace is empty: any port is free in it.
    let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();

    let mut blue = Instance::start(&namespace, dir.path(), "1.0.0", addr);
    let mut green = Instance::start(&namespace, dir.path(), "2.0.0", addr);
    let load = start_demo_load(
        namespace.command(demo_load()),
        addr,
        4,
        Duration::from_millis(2500),
    );
    thread::sleep(Duration::from_millis(1000));
    let (code, took) = blue.terminate(Duration::from_secs(5));
    let report = load.finish();
    let blue_log = blue.log();

    assert_eq!(code, Some(0), "the old instance's exit:\n{blue_log}");
    assert!(took < Duration::from_secs(3), "stopping took {took:?}");
    assert!(
        blue_log.contains("stopped on SIGTERM"),
        "no stop line:\n{blue_log}"
    );
    assert_eq!(
        report.failed,
        0,
        "requests failed during the handover: {report:?}\nold instance:\n{blue_log}\n\
         new instance:\n{}",
        green.log()
    );
    assert!(
        !blue_log.contains("tcp_migrate_req is 0"),
        "the sysctl did not reach the namespace:\n{blue_log}"
    );
    // Both answered: the port really was shared, the load really ran
    // across the handover.
    assert!(
        report.versions.get("1.0.0").is_some_and(|&n| n > 0)
            && report.versions.get("2.0.0").is_some_and(|&n| n > 0),
        "expected answers from both versions: {report:?}"
    );
    let (code, _) = green.terminate(Duration::from_secs(5));
    assert_eq!(code, Some(0), "the new instance's exit:\n{}", green.log());
}
