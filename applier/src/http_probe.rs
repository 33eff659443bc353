//! One small HTTP GET with a deadline and a cap on the body: what a health
//! gate and a rollout's metrics gate read. A probe target is a service
//! under test, possibly broken, so it gets neither forever to answer nor
//! unbounded memory for its answer; HTTP error statuses are answers too
//! (the caller judges them), not errors.

use std::io::Read;
use std::time::Duration;

use thiserror::Error;

/// Why a probe got no answer (an answer with any status is not an error).
#[derive(Debug, Error)]
pub enum ProbeError {
    /// No connection, no response in time, or no HTTP.
    #[error("GET {url}: {source}")]
    NoAnswer {
        url: String,
        #[source]
        source: ureq::Error,
    },
    /// The status came, the body broke off.
    #[error("GET {url}: reading the body: {source}")]
    Body {
        url: String,
        #[source]
        source: std::io::Error,
    },
}

/// `GET url`: its status and at most `cap` bytes of body (lossily
/// decoded). `Err` says why no answer came.
pub fn get(url: &str, timeout: Duration, cap: u64) -> Result<(u16, String), ProbeError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent
        .get(url)
        .header("Connection", "close")
        .call()
        .map_err(|source| ProbeError::NoAnswer {
            url: url.to_string(),
            source,
        })?;
    let status = response.status().as_u16();
    let mut body = Vec::new();
    response
        .body_mut()
        .as_reader()
        .take(cap)
        .read_to_end(&mut body)
        .map_err(|source| ProbeError::Body {
            url: url.to_string(),
            source,
        })?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
