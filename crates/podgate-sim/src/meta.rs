//! Object metadata helpers of the simulated Kubernetes API server (a test double).
//!
//! Owns what the server itself writes into `metadata`: uid, creationTimestamp,
//! generated names; and small accessors on JSON objects that never panic.

use serde_json::{Map, Value};

/// A random RFC 4122 version-4 uid, like the real server's.
pub(crate) fn new_uid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().fold(String::with_capacity(32), |mut s, x| {
        use std::fmt::Write as _;
        let _ = write!(s, "{x:02x}");
        s
    });
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The current time at whole seconds, RFC 3339 in UTC: `2026-11-25T19:52:20Z`.
pub(crate) fn now_timestamp() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .to_string()
}

/// The 5-character suffix the real server appends to `generateName`.
pub(crate) fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| {
            let i: usize = rand::random::<u32>() as usize % ALPHABET.len();
            char::from(ALPHABET[i])
        })
        .collect()
}

/// `metadata`, created empty if the object has none. `None` if `obj` is no object.
pub(crate) fn meta_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    let map = obj.as_object_mut()?;
    let meta = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut()
}

/// A string field of `metadata`.
pub(crate) fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

/// The object without `metadata` and `status`: what `generation` counts changes of.
pub(crate) fn spec_part(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_looks_like_a_v4_uuid() {
        let uid = new_uid();
        assert_eq!(uid.len(), 36);
        assert_eq!(uid.as_bytes()[14], b'4');
        assert_ne!(uid, new_uid());
    }

    #[test]
    fn timestamp_has_whole_seconds() {
        let ts = now_timestamp();
        assert_eq!(ts.len(), "2026-11-25T19:52:20Z".len(), "{ts}");
        assert!(ts.ends_with('Z'));
    }
}
