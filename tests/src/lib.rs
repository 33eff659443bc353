//! ferry's end-to-end test harness.
//!
//! The tests in `tests/tests/` drive the real `ferry-publish` and `ferry`
//! binaries against real files, real signatures and a real HTTP server bound
//! to 127.0.0.1, because the properties that matter — nothing is written
//! before everything is verified, a node never leaves its install root, a
//! rollback restores exact bytes — only exist in the assembled system. Each
//! test file is named after the threat or promise it checks (after
//! awslabs/tough's tests).
//!
//! The modules here are the plumbing those tests share:
//! - [`browser`]: headless Chromium over the DevTools pipe, for the dashboard;
//! - [`binaries`]: builds and finds the two binaries (and the demo
//!   service's), once per test process;
//! - [`run`]: runs a command with a deadline and keeps everything it printed;
//! - [`http_server`]: a small static file server with fault injection;
//! - [`fixtures`]: release input trees, a throw-away workspace (keys, repo,
//!   nodes) and tree comparisons;
//! - [`tamper`]: re-signing of crafted indexes and manifests with a chosen key;
//! - [`roots`]: driving `ferry-publish root …`, `refresh` and multi-key
//!   releases, and splitting multi-signature `.minisig` files;
//! - [`real_code`]: real executables and their deterministic "next builds",
//!   for the delta tests;
//! - [`small_fs`]: size-limited tmpfs mounts for the disk-full tests;
//! - [`threats`]: a repository served to a node over HTTP, and the
//!   "refused, said why, changed nothing" assertion of the threat tests;
//! - [`crash_walk`]: the crash-point walk's discovery run and kills, for
//!   the crash tests;
//! - [`cluster`]: five real nodes and the coordinator, for the rollout tests;
//! - [`etcd`]: a real etcd on 127.0.0.1 and its history, for the
//!   pull-mode coordination tests;
//! - [`fleet`]: a thousand fake nodes (`fake_node.sh`) behind the `command`
//!   transport, for the fleet-scale rollout test and benchmark;
//! - [`rollout_api`]: a real `ferry rollout serve` and a raw HTTP/SSE client;
//! - [`demo`]: demo-service releases for the node lifecycle tests;
//! - [`blue_green`]: a blue-green node running the demo service in a
//!   network namespace, and its instances counted;
//! - [`load`]: the load generator and idle connections for restart tests;
//! - [`metrics_endpoint`]: a settable number over HTTP for the metrics gate;
//! - [`netns`]: throw-away network namespaces for per-namespace sysctls;
//! - [`pki`]: a throw-away CA and a server certificate, for HTTPS tests;
//! - [`sshd`]: a real OpenSSH server on 127.0.0.1 and the client files
//!   that trust exactly it, for the `ssh` transport;
//! - [`ssh_cluster`]: the five rollout nodes reached over that sshd;
//! - [`webhook`]: a webhook receiver that records what it is POSTed, and
//!   receivers that are down, for the notification tests.

pub mod binaries;
pub mod blue_green;
pub mod browser;
pub mod cluster;
pub mod crash_walk;
pub mod demo;
pub mod etcd;
pub mod fixtures;
pub mod fleet;
pub mod http_server;
pub mod load;
pub mod metrics_endpoint;
pub mod netns;
pub mod pki;
pub mod real_code;
pub mod rollout_api;
pub mod roots;
pub mod run;
pub mod small_fs;
pub mod ssh_cluster;
pub mod sshd;
pub mod tamper;
pub mod threats;
pub mod waves;
pub mod webhook;
