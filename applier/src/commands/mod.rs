//! One module per subcommand; `main.rs` only dispatches here.

pub mod apply;
pub mod history;
pub mod rollback;
pub mod status;
