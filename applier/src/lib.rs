//! ferry's node applier.
//!
//! It moves one installation from release to release without ever leaving it
//! between two: everything from the network is verified before use
//! (`trust`, `store`), an update is planned before it touches the disk
//! (`plan`), built beside the running release (`release_dir`), and made live
//! by one atomic rename (`switch`). The `ferry` binary (cli/) only parses
//! arguments and dispatches to `commands`; the cluster coordinator
//! (coordinator/, `ferry rollout`) builds on this library, never the other
//! way round.

// Lines on stdout/stderr that a closed pipe cannot turn into a panic.
#[macro_use]
extern crate ferry_output;

pub mod announce;
pub mod bases;
pub mod bundle;
pub mod commands;
pub mod config;
pub mod config_bounds;
pub mod converge;
pub mod coordination;
pub mod drift;
pub mod durable;
pub mod error;
pub mod events;
pub mod exit;
pub mod faults;
pub mod http_probe;
pub mod in_place;
pub mod installed;
pub mod journal;
pub mod kept_manifests;
pub mod lifecycle;
pub mod lock;
pub mod metrics;
pub mod migrations;
pub mod node_id;
pub mod notify;
pub mod operation;
pub mod pace;
pub mod patching;
pub mod plan;
pub mod policy;
pub mod preflight;
pub mod recovery;
pub mod recovery_preconditions;
pub mod regular_file;
pub mod release_dir;
pub mod release_repair;
pub mod restore_point;
pub mod retention;
pub mod retry;
pub mod rolled_back_here;
pub mod sharing;
pub mod shell;
pub mod sources;
pub mod space;
pub mod special_modes;
pub mod state;
pub mod store;
pub mod switch;
pub mod transport;
pub mod trust;
pub mod waves;
pub mod x509;
