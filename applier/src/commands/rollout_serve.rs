//! `ferry rollout serve`: the rollout HTTP API and dashboard
//! (`crate::rollout::api`).

use crate::error::Result;
use crate::rollout::api::{self, ServeArgs};

pub fn run(args: &ServeArgs) -> Result<()> {
    api::serve(args)
}
