//! One small HTTP GET with a deadline and a cap on the body: what a health
//! gate and a rollout's metrics gate read. A probe target is a service
//! under test, possibly broken, so it gets neither forever to answer nor
//! unbounded memory for its answer; HTTP error statuses are answers too
//! (the caller judges them), not errors.

use std::io::Read;
use std::time::Duration;

/// `GET url`: its status and at most `cap` bytes of body (lossily
/// decoded). `Err` says why no answer came.
pub fn get(url: &str, timeout: Duration, cap: u64) -> Result<(u16, String), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent
        .get(url)
        .header("Connection", "close")
        .call()
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status().as_u16();
    let mut body = Vec::new();
    response
        .body_mut()
        .as_reader()
        .take(cap)
        .read_to_end(&mut body)
        .map_err(|e| format!("GET {url}: reading the body: {e}"))?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
