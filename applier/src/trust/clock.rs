//! The time trust decisions are made at.
//!
//! Expiry is what defeats a freeze attack (a captured, validly signed index
//! or root replayed for ever), so tests must be able to move the clock past
//! an expiry without waiting for it. Only a fault-injection build (cargo
//! feature `fault-injection`) reads `FERRY_NOW`; a shipped build cannot be
//! talked into another time by its environment.

use jiff::Timestamp;

use crate::error::Result;

/// Now, or in a fault-injection build the RFC 3339 time in `FERRY_NOW`.
#[cfg(feature = "fault-injection")]
pub fn now() -> Result<Timestamp> {
    match std::env::var("FERRY_NOW") {
        Ok(text) => text
            .parse()
            .map_err(|source| crate::error::NodeError::BadClock { text, source }),
        Err(_) => Ok(Timestamp::now()),
    }
}

/// Now.
#[cfg(not(feature = "fault-injection"))]
pub fn now() -> Result<Timestamp> {
    Ok(Timestamp::now())
}
