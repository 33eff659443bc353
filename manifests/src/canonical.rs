//! Canonical JSON: the one byte sequence ferry writes for a value.
//!
//! Determinism is what lets a release engineer rebuild a release and get the
//! same manifest, and lets the publisher tell "same content, already
//! published" from "different content under the same version". Object keys
//! are sorted bytewise at every level, output is indented by two spaces and
//! ends with a newline (people read manifests), and numbers are integers
//! (the format has no floats). Signatures cover the exact bytes served, so
//! readers never re-canonicalise: this is for writers only.

use serde::Serialize;
use serde_json::Value;

/// Serialises `value` canonically.
pub fn to_canonical_json<T: Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let value = serde_json::to_value(value)?;
    let mut out = Vec::with_capacity(4096);
    write_value(&value, 0, &mut out)?;
    out.push(b'\n');
    Ok(out)
}

fn write_value(value: &Value, indent: usize, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    match value {
        Value::Object(map) => {
            if map.is_empty() {
                out.extend_from_slice(b"{}");
                return Ok(());
            }
            // Sort explicitly: serde_json's map order depends on a cargo feature
            // some other crate in a build could switch on.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.extend_from_slice(b"{\n");
            for (i, (key, v)) in entries.iter().enumerate() {
                pad(indent + 1, out);
                serde_json::to_writer(&mut *out, key)?;
                out.extend_from_slice(b": ");
                write_value(v, indent + 1, out)?;
                if i + 1 < entries.len() {
                    out.push(b',');
                }
                out.push(b'\n');
            }
            pad(indent, out);
            out.push(b'}');
        }
        Value::Array(items) => {
            if items.is_empty() {
                out.extend_from_slice(b"[]");
                return Ok(());
            }
            out.extend_from_slice(b"[\n");
            for (i, v) in items.iter().enumerate() {
                pad(indent + 1, out);
                write_value(v, indent + 1, out)?;
                if i + 1 < items.len() {
                    out.push(b',');
                }
                out.push(b'\n');
            }
            pad(indent, out);
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar)?,
    }
    Ok(())
}

fn pad(indent: usize, out: &mut Vec<u8>) {
    out.extend(std::iter::repeat_n(b' ', indent * 2));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_at_every_level() {
        let v = json!({"b": 1, "a": {"z": [true, null], "y": "s"}, "c": []});
        let text = String::from_utf8(to_canonical_json(&v).unwrap()).unwrap();
        assert_eq!(
            text,
            "{\n  \"a\": {\n    \"y\": \"s\",\n    \"z\": [\n      true,\n      null\n    ]\n  },\n  \"b\": 1,\n  \"c\": []\n}\n"
        );
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, v);
    }
}
