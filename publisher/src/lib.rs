//! `ferry-publish`: turns a directory of release files into ferry's static,
//! signed repository (see the `manifests` crate for the format itself).
//!
//! The binary is a thin shell over this library so that the commands can be
//! driven from tests and from other tools without spawning a process. Each
//! module has one job:
//!
//! - [`keys`]: minisign key files, key generation and signing;
//! - [`input`]: walking the release directory into a list of safe entries;
//! - [`migrations`]: data migration scripts (`--migrations`) added to the
//!   release tree and declared in the manifest;
//! - [`objects`]: hashing, compressing, storing and checking content objects;
//! - [`plan`]: deciding, before anything is written, what a release needs;
//! - [`deltas`]: binary patches from earlier releases' contents, planned,
//!   computed in parallel, stored and reported;
//! - [`schedule`]: the queue that runs new objects and deltas together,
//!   largest first;
//! - [`publication`]: building the manifest and the next index from a plan;
//! - [`repository`]: the repository directory, its lock, verified reads and
//!   atomic writes;
//! - [`root_chain`]: the chain of `root.json` versions and the trust the
//!   publisher reads its own repository with;
//! - [`x509`]: detached CMS signatures with an X.509 chain (`.p7s`);
//! - [`commands`]: one module per subcommand, tying the above together;
//! - [`cli`]: the command line, whose spellings are a contract.

// Lines on stdout/stderr that a closed pipe cannot turn into a panic.
#[macro_use]
extern crate ferry_output;

pub mod byte_size;
pub mod cli;
pub mod commands;
pub mod deltas;
pub mod input;
pub mod keys;
pub mod migrations;
pub mod objects;
pub mod plan;
pub mod publication;
pub mod repository;
pub mod root_chain;
pub mod schedule;
pub mod x509;
