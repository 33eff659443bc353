//! The service ferry's node lifecycle is tested and demonstrated with.
//!
//! Restart strategies, health checks and automatic rollback can only be
//! shown with a real service: one that listens on a port, reports its
//! version, can be built or configured to fail its health check, and stops
//! gracefully. `demo-service` is that service, small enough to read in one
//! sitting; `demo-load` is the client that proves a restart dropped no
//! request. Neither is part of what ferry ships.
//!
//! What the service does comes from the release it runs from
//! (`<release>/demo.toml`, see [`settings`]), so one binary serves as every
//! version a test publishes.
//!
//! Modules:
//! - [`settings`]: `demo.toml` and where the release directory is;
//! - [`listener`]: SO_REUSEPORT listeners, for blue-green restarts;
//! - [`http`]: the little HTTP/1.1 it speaks;
//! - [`service`]: the answers to /health and /version;
//! - [`connections`]: a thread per connection and how each ends on stop;
//! - [`server`]: the accept loop and the order of a graceful stop;
//! - [`signals`]: SIGTERM and SIGINT (stop) and SIGHUP (reload) as values,
//!   not handlers;
//! - [`load`]: the load generator and idle connection holder;
//! - [`commands`]: the `[service]` command lines a ferry node runs it with.

pub mod commands;
pub mod connections;
pub mod http;
pub mod listener;
pub mod load;
pub mod server;
pub mod service;
pub mod settings;
pub mod signals;
