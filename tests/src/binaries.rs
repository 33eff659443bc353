//! Finds the real `ferry` and `ferry-publish` binaries, and the demo
//! service's (`demo-service`, `demo-load`).
//!
//! Cargo only hands `CARGO_BIN_EXE_*` to tests of the package that owns the
//! binary, and these tests live in their own package, so they build the two
//! binaries themselves — once per test process, whatever the number of
//! tests — with the same cargo, profile and target directory as the test
//! executable. Testing a stale binary left over from an earlier build would
//! be worse than no test, hence the build instead of a lookup.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// Where the freshly built binaries are.
#[derive(Debug)]
struct Built {
    ferry: PathBuf,
    ferry_publish: PathBuf,
}

static BUILT: OnceLock<Built> = OnceLock::new();
static FAULT_INJECTION: OnceLock<PathBuf> = OnceLock::new();
static X509: OnceLock<PathBuf> = OnceLock::new();
static X509_FAULT_INJECTION: OnceLock<PathBuf> = OnceLock::new();
static DEMO: OnceLock<DemoBuilt> = OnceLock::new();
static DEMO_UNHEALTHY: OnceLock<PathBuf> = OnceLock::new();

/// Copies of the demo crate's binaries, out of cargo's reach.
#[derive(Debug)]
struct DemoBuilt {
    service: PathBuf,
    load: PathBuf,
}

/// The node applier, built from this workspace.
pub fn ferry() -> &'static Path {
    &built().ferry
}

/// The publisher, built from this workspace.
pub fn ferry_publish() -> &'static Path {
    &built().ferry_publish
}

/// `ferry` built with the `fault-injection` feature (crash points, see
/// applier/src/faults.rs), in a target directory of its own so that it never
/// replaces the normal binary other tests run.
pub fn ferry_with_fault_injection() -> &'static Path {
    FAULT_INJECTION.get_or_init(|| {
        let profile_dir = profile_dir();
        let profile = profile_name(&profile_dir);
        let target_dir = profile_dir
            .parent()
            .expect("the profile directory has a parent")
            .join("fault-injection");
        let mut command = cargo_build(&target_dir, &profile);
        command.args(["-p", "ferry", "--features", "fault-injection"]);
        run_build(command);
        let binary = target_dir.join(&profile).join("ferry");
        assert!(
            binary.is_file(),
            "cargo built, but {} does not exist",
            binary.display()
        );
        binary
    })
}

/// `ferry` built with the `x509` feature (CMS signatures, vendored
/// OpenSSL: the `ferry-x509` of `cargo xtask dist`), in a target directory
/// of its own for the same reason as [`ferry_with_fault_injection`]. The
/// first build compiles OpenSSL and takes minutes.
pub fn ferry_with_x509() -> &'static Path {
    X509.get_or_init(|| build_x509_variant("x509", "ferry-x509"))
}

/// `ferry` built with both the `x509` and the `fault-injection` features:
/// the X.509 build with the injectable clock (`FERRY_NOW`), for tests that
/// let a certificate expire. [`ferry_with_x509`] stays a build without
/// fault injection, like the one shipped.
pub fn ferry_with_x509_and_fault_injection() -> &'static Path {
    X509_FAULT_INJECTION
        .get_or_init(|| build_x509_variant("x509,fault-injection", "ferry-x509-fault-injection"))
}

/// Builds `ferry` with `features` in the `x509` target directory and copies
/// it to `name` there. Both X.509 variants share that directory, so the
/// vendored OpenSSL is compiled once; cargo keeps both feature sets' builds
/// apart, but links either to the same `ferry`, hence the copy, made under
/// a lock so that no test can run a binary the other variant's build has
/// just replaced.
fn build_x509_variant(features: &str, name: &str) -> PathBuf {
    static BUILDING: Mutex<()> = Mutex::new(());
    let _building = BUILDING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let profile_dir = profile_dir();
    let profile = profile_name(&profile_dir);
    let target_dir = profile_dir
        .parent()
        .expect("the profile directory has a parent")
        .join("x509");
    let mut command = cargo_build(&target_dir, &profile);
    command.args(["-p", "ferry", "--features", features]);
    run_build(command);
    let built = target_dir.join(&profile).join("ferry");
    assert!(
        built.is_file(),
        "cargo built, but {} does not exist",
        built.display()
    );
    let copy = target_dir.join(&profile).join(name);
    let partial = target_dir.join(&profile).join(format!("{name}.partial"));
    std::fs::copy(&built, &partial)
        .and_then(|_| std::fs::rename(&partial, &copy))
        .unwrap_or_else(|e| panic!("cannot copy {} to {}: {e}", built.display(), copy.display()));
    copy
}

/// `demo-service` (examples/demo-service), built from this workspace. Its
/// file name is `demo-service`, so a test can copy it into a release as
/// `<release>/bin/demo-service`.
pub fn demo_service() -> &'static Path {
    &demo_built().service
}

/// `demo-load`, the load generator as a program (for `ip netns exec`).
pub fn demo_load() -> &'static Path {
    &demo_built().load
}

/// `demo-service` built with `DEMO_SERVICE_UNHEALTHY=1`: it fails its
/// health check whatever its release's demo.toml says, like a broken build.
/// Also named `demo-service`, in a directory of its own.
pub fn demo_service_unhealthy() -> &'static Path {
    DEMO_UNHEALTHY.get_or_init(|| build_demo(DemoVariant::Unhealthy).service)
}

fn demo_built() -> &'static DemoBuilt {
    DEMO.get_or_init(|| build_demo(DemoVariant::Healthy))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum DemoVariant {
    Healthy,
    Unhealthy,
}

/// Builds the demo crate, the variant chosen by `DEMO_SERVICE_UNHEALTHY`
/// (read with `option_env!`, so cargo rebuilds `demo-service` when it
/// changes), and copies the binaries to `<profile>/demo-variants/<variant>/`.
/// Both variants are linked to the same path, hence the copies, made under
/// a lock so that no test copies a binary the other variant's build has
/// just replaced. A separate target directory would avoid the relinks but
/// compile every dependency a second time.
fn build_demo(variant: DemoVariant) -> DemoBuilt {
    static BUILDING: Mutex<()> = Mutex::new(());
    let _building = BUILDING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let profile_dir = profile_dir();
    let profile = profile_name(&profile_dir);
    let target_dir = profile_dir
        .parent()
        .expect("the profile directory has a parent");
    let mut command = cargo_build(target_dir, &profile);
    command.args(["-p", "ferry-demo-service"]);
    let variant_name = match variant {
        DemoVariant::Healthy => {
            command.env_remove("DEMO_SERVICE_UNHEALTHY");
            "healthy"
        }
        DemoVariant::Unhealthy => {
            command.env("DEMO_SERVICE_UNHEALTHY", "1");
            "unhealthy"
        }
    };
    run_build(command);
    let copies = profile_dir.join("demo-variants").join(variant_name);
    std::fs::create_dir_all(&copies)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", copies.display()));
    let copy = |name: &str| {
        let built = profile_dir.join(name);
        assert!(
            built.is_file(),
            "cargo built, but {} does not exist",
            built.display()
        );
        let copy = copies.join(name);
        let partial = copies.join(format!("{name}.partial"));
        std::fs::copy(&built, &partial)
            .and_then(|_| std::fs::rename(&partial, &copy))
            .unwrap_or_else(|e| {
                panic!("cannot copy {} to {}: {e}", built.display(), copy.display())
            });
        copy
    };
    DemoBuilt {
        service: copy("demo-service"),
        load: copy("demo-load"),
    }
}

/// The workspace root: the parent of this package's directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent directory")
        .to_path_buf()
}

fn built() -> &'static Built {
    BUILT.get_or_init(build)
}

/// The profile directory the test executable was built into
/// (`<target>/<profile>/deps/<test>` → `<target>/<profile>`), unless
/// `CARGO_TARGET_DIR` says otherwise.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable has a path");
    let mut dir = exe
        .parent()
        .expect("the test executable is in a directory")
        .to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        let profile = dir
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_else(|| "debug".into());
        let mut target = PathBuf::from(target);
        if target.is_relative() {
            target = workspace_root().join(target);
        }
        return target.join(profile);
    }
    dir
}

fn profile_name(profile_dir: &Path) -> String {
    profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .expect("the profile directory has a UTF-8 name")
        .to_string()
}

/// `cargo build --quiet --target-dir DIR` for `profile`; add packages.
fn cargo_build(target_dir: &Path, profile: &str) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace_root())
        .args(["build", "--quiet", "--target-dir"])
        .arg(target_dir);
    match profile {
        "debug" => {}
        "release" => {
            command.arg("--release");
        }
        other => {
            command.args(["--profile", other]);
        }
    }
    command
}

fn run_build(mut command: Command) {
    let status = command.status().unwrap_or_else(|e| {
        panic!("cannot run `{command:?}` to build the binaries under test: {e}")
    });
    assert!(
        status.success(),
        "building the binaries under test failed ({status}): `{command:?}` in {}; \
         the end-to-end tests need them to compile",
        workspace_root().display()
    );
}

fn build() -> Built {
    let profile_dir = profile_dir();
    let profile = profile_name(&profile_dir);
    let target_dir = profile_dir
        .parent()
        .expect("the profile directory has a parent");
    let mut command = cargo_build(target_dir, &profile);
    command.args(["-p", "ferry", "-p", "ferry-publish"]);
    run_build(command);
    let built = Built {
        ferry: profile_dir.join("ferry"),
        ferry_publish: profile_dir.join("ferry-publish"),
    };
    for binary in [&built.ferry, &built.ferry_publish] {
        assert!(
            binary.is_file(),
            "cargo built, but {} does not exist",
            binary.display()
        );
    }
    built
}
