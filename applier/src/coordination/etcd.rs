//! A small client for etcd's JSON gateway (the v3 API over HTTP/1.1 at
//! `/v3/...`), on the applier's blocking HTTP client.
//!
//! Why not an etcd client crate: they are gRPC clients on an async runtime,
//! and the applier stays small and synchronous. The gateway speaks the same
//! API with JSON bodies: keys and values are base64, 64-bit integers
//! (revisions, lease ids, TTLs) are decimal strings, and fields equal to
//! their zero value are left out.
//!
//! Several endpoints are members of one cluster: a request goes to the
//! first that answers; a connection failure or a 5xx (a member without a
//! leader, say) moves on to the next one.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use manifests::untrusted_text::escape;
use serde_json::{json, Value};
use thiserror::Error;

/// Largest gateway answer read: a range over every slot and member of a
/// big fleet stays far below it.
const MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

/// Why a request to etcd brought no usable answer. What etcd (or whatever
/// answers at its address) said is shown escaped.
#[derive(Debug, Error)]
pub enum EtcdError {
    /// No endpoint answered (connection failures, 5xx): each with why.
    #[error("no etcd endpoint answered ({}); check [coordination] endpoints and that etcd runs", escape(&failures.join("; ")))]
    NoEndpoint { failures: Vec<String> },
    /// The answer is not JSON: not etcd's gateway.
    #[error("{url} did not answer JSON ({source}): is this etcd's gateway (etcd 3.4 or later)?")]
    NotJson {
        url: String,
        #[source]
        source: serde_json::Error,
    },
    /// etcd answered, and turned the request down (4xx).
    #[error("{url} refused the request (HTTP {status}): {}", escape(message))]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    #[error("etcd refused a lease: {}", escape(.0))]
    LeaseRefused(String),
    /// A grant answered with lease id 0.
    #[error("etcd granted no lease: {0}")]
    NoLease(Value),
    /// An answer without a field the request needs, or with a value of
    /// the wrong kind: what was wrong, as etcd answered it.
    #[error("etcd answered {}", escape(.0))]
    Malformed(String),
}

/// One key as etcd stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    /// The lease the key is attached to; 0 for none.
    pub lease: i64,
}

/// The keys a range found, and the store's revision it saw.
#[derive(Debug, Clone)]
pub struct Range {
    pub revision: i64,
    pub kvs: Vec<KeyValue>,
}

/// How a range is sorted (etcd's `sort_target`, ascending).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    Key,
    /// Creation order: the order in which keys joined a queue.
    CreateRevision,
}

#[derive(Clone)]
pub struct EtcdClient {
    endpoints: Vec<String>,
    agent: ureq::Agent,
}

impl EtcdClient {
    /// A client for `endpoints` (`http(s)://host:port`, checked by the
    /// configuration); `timeout` bounds each request.
    pub fn new(
        endpoints: &[String],
        timeout: Duration,
        tls: Option<ureq::tls::TlsConfig>,
    ) -> EtcdClient {
        let mut builder = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(timeout))
            .timeout_global(Some(timeout))
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")));
        if let Some(tls) = tls {
            builder = builder.tls_config(tls);
        }
        EtcdClient {
            endpoints: endpoints
                .iter()
                .map(|e| e.trim_end_matches('/').to_string())
                .collect(),
            agent: builder.build().new_agent(),
        }
    }

    /// The endpoints, for messages.
    pub fn endpoints(&self) -> String {
        self.endpoints.join(", ")
    }

    /// POSTs `body` to `path` on the first endpoint that answers.
    fn call(&self, path: &str, body: &Value) -> Result<Value, EtcdError> {
        let body = body.to_string();
        let mut failures = Vec::new();
        for endpoint in &self.endpoints {
            let url = format!("{endpoint}{path}");
            let response = self
                .agent
                .post(&url)
                .content_type("application/json")
                .send(body.as_bytes());
            let mut response = match response {
                Ok(r) => r,
                Err(e) => {
                    failures.push(format!("{endpoint}: {e}"));
                    continue;
                }
            };
            let status = response.status();
            let text = match response
                .body_mut()
                .with_config()
                .limit(MAX_RESPONSE_BYTES)
                .read_to_string()
            {
                Ok(text) => text,
                Err(e) => {
                    failures.push(format!("{endpoint}: reading the answer: {e}"));
                    continue;
                }
            };
            let parsed: Value =
                serde_json::from_str(&text).map_err(|source| EtcdError::NotJson {
                    url: url.clone(),
                    source,
                })?;
            if status.is_server_error() {
                failures.push(format!(
                    "{endpoint}: HTTP {status}: {}",
                    error_message(&parsed)
                ));
                continue;
            }
            if !status.is_success() {
                return Err(EtcdError::Refused {
                    url,
                    status: status.as_u16(),
                    message: error_message(&parsed),
                });
            }
            return Ok(parsed);
        }
        Err(EtcdError::NoEndpoint { failures })
    }

    /// The key `key`, or with `prefix` every key starting with it, at the
    /// current revision or at `revision` (a past one).
    pub fn range(
        &self,
        key: &str,
        prefix: bool,
        sort: SortBy,
        revision: Option<i64>,
    ) -> Result<Range, EtcdError> {
        let mut body = json!({
            "key": BASE64.encode(key),
            "sort_target": match sort {
                SortBy::Key => "KEY",
                SortBy::CreateRevision => "CREATE",
            },
            "sort_order": "ASCEND",
        });
        if prefix {
            body["range_end"] = Value::from(BASE64.encode(prefix_end(key)));
        }
        if let Some(revision) = revision {
            body["revision"] = Value::from(revision.to_string());
        }
        let answer = self.call("/v3/kv/range", &body)?;
        let kvs = match answer.get("kvs") {
            None => Vec::new(),
            Some(Value::Array(kvs)) => kvs.iter().map(key_value).collect::<Result<_, _>>()?,
            Some(other) => return Err(EtcdError::Malformed(format!("a range with kvs = {other}"))),
        };
        Ok(Range {
            revision: header_revision(&answer)?,
            kvs,
        })
    }

    /// Writes `key`, attached to `lease` (0: none). Returns the revision.
    pub fn put(&self, key: &str, value: &[u8], lease: i64) -> Result<i64, EtcdError> {
        let mut body = json!({ "key": BASE64.encode(key), "value": BASE64.encode(value) });
        if lease != 0 {
            body["lease"] = Value::from(lease.to_string());
        }
        header_revision(&self.call("/v3/kv/put", &body)?)
    }

    /// Writes `key` only if it does not exist. Returns whether it wrote.
    pub fn create(&self, key: &str, value: &[u8]) -> Result<bool, EtcdError> {
        let key = BASE64.encode(key);
        let body = json!({
            "compare": [{ "key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0" }],
            "success": [{ "request_put": { "key": key, "value": BASE64.encode(value) } }],
        });
        let answer = self.call("/v3/kv/txn", &body)?;
        Ok(answer.get("succeeded").and_then(Value::as_bool) == Some(true))
    }

    /// Deletes `key` (with `prefix`, every key starting with it). Returns
    /// how many keys were deleted.
    pub fn delete(&self, key: &str, prefix: bool) -> Result<i64, EtcdError> {
        let mut body = json!({ "key": BASE64.encode(key) });
        if prefix {
            body["range_end"] = Value::from(BASE64.encode(prefix_end(key)));
        }
        let answer = self.call("/v3/kv/deleterange", &body)?;
        int_field(&answer, "deleted")
    }

    /// A new lease living `ttl_seconds` unless kept alive. Returns its id.
    pub fn grant(&self, ttl_seconds: u64) -> Result<i64, EtcdError> {
        let answer = self.call(
            "/v3/lease/grant",
            &json!({ "TTL": ttl_seconds.to_string() }),
        )?;
        if let Some(error) = answer.get("error").and_then(Value::as_str) {
            if !error.is_empty() {
                return Err(EtcdError::LeaseRefused(error.to_string()));
            }
        }
        let id = int_field(&answer, "ID")?;
        if id == 0 {
            return Err(EtcdError::NoLease(answer));
        }
        Ok(id)
    }

    /// Renews lease `id`. Returns its new TTL: 0 when it has expired (and
    /// its keys are gone).
    pub fn keep_alive(&self, id: i64) -> Result<i64, EtcdError> {
        let answer = self.call("/v3/lease/keepalive", &json!({ "ID": id.to_string() }))?;
        // A stream of one message: `{"result": {...}}`.
        let result = answer.get("result").unwrap_or(&answer);
        int_field(result, "TTL")
    }

    /// Ends lease `id` now, deleting every key attached to it.
    pub fn revoke(&self, id: i64) -> Result<(), EtcdError> {
        match self.call("/v3/lease/revoke", &json!({ "ID": id.to_string() })) {
            Ok(_) => Ok(()),
            // Already expired: its keys are gone, which is what was asked.
            Err(EtcdError::Refused { message, .. }) if message.contains("lease not found") => {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// The end of the range of keys starting with `prefix`: the prefix with
/// its last byte incremented (etcd's convention; `\0` means "to the end").
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn error_message(answer: &Value) -> String {
    answer
        .get("message")
        .or_else(|| answer.get("error"))
        .and_then(Value::as_str)
        .map_or_else(|| answer.to_string(), str::to_string)
}

/// An int64 field: a decimal string, a number, or absent (zero).
fn int_field(object: &Value, name: &str) -> Result<i64, EtcdError> {
    let not_an_integer =
        |shown: String| EtcdError::Malformed(format!("{name} = {shown}, not an integer"));
    match object.get(name) {
        None | Some(Value::Null) => Ok(0),
        Some(Value::String(s)) => s.parse().map_err(|_| not_an_integer(format!("{s:?}"))),
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| not_an_integer(n.to_string())),
        Some(other) => Err(not_an_integer(other.to_string())),
    }
}

fn header_revision(answer: &Value) -> Result<i64, EtcdError> {
    let header = answer
        .get("header")
        .ok_or_else(|| EtcdError::Malformed(format!("without a header: {answer}")))?;
    int_field(header, "revision")
}

fn key_value(kv: &Value) -> Result<KeyValue, EtcdError> {
    let bytes = |name: &str| -> Result<Vec<u8>, EtcdError> {
        match kv.get(name).and_then(Value::as_str) {
            None => Ok(Vec::new()),
            Some(b64) => BASE64
                .decode(b64)
                .map_err(|e| EtcdError::Malformed(format!("a {name} that is not base64: {e}"))),
        }
    };
    Ok(KeyValue {
        key: String::from_utf8(bytes("key")?)
            .map_err(|_| EtcdError::Malformed("a key that is not UTF-8".into()))?,
        value: bytes("value")?,
        create_revision: int_field(kv, "create_revision")?,
        mod_revision: int_field(kv, "mod_revision")?,
        lease: int_field(kv, "lease")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key_after_every_key_with_the_prefix() {
        assert_eq!(prefix_end("/ferry/slots/"), b"/ferry/slots0".to_vec());
        assert_eq!(prefix_end("a"), b"b".to_vec());
        assert_eq!(prefix_end(""), vec![0]);
    }

    #[test]
    fn gateway_answers_are_decoded() {
        let answer = json!({
            "header": { "revision": "7" },
            "kvs": [{
                "key": BASE64.encode("/p/slots/n1"),
                "create_revision": "5",
                "mod_revision": "6",
                "value": BASE64.encode("{}"),
                "lease": "694d77aa9e3c4a05"
            }]
        });
        // A lease id is a decimal string; anything else is refused.
        let kv = &answer["kvs"][0];
        let err = key_value(kv).unwrap_err();
        assert!(matches!(err, EtcdError::Malformed(_)), "{err}");
        assert!(
            err.to_string().starts_with("etcd answered lease = "),
            "{err}"
        );
        let mut kv = kv.clone();
        kv["lease"] = Value::from("7587876539234");
        let decoded = key_value(&kv).unwrap();
        assert_eq!(decoded.key, "/p/slots/n1");
        assert_eq!(decoded.value, b"{}");
        assert_eq!(
            (decoded.create_revision, decoded.mod_revision, decoded.lease),
            (5, 6, 7587876539234)
        );
        assert_eq!(header_revision(&answer).unwrap(), 7);
        // Zero values are left out by the gateway.
        assert_eq!(int_field(&json!({}), "TTL").unwrap(), 0);
    }
}
