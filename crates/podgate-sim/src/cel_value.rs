//! A custom resource's JSON as the CEL values its rules see, shaped by the schema the
//! way the real API server shapes them (`cel.rs` evaluates the rules).
//!
//! Owns: property names escaped as Kubernetes escapes them (`namespace` is
//! `__namespace__`, `a-b` is `a__dash__b`; names that cannot be escaped, and fields the
//! schema does not know, are not visible), map keys (`additionalProperties`) kept as
//! they are, `type: number` as a double, and `duration()`'s parsing. Never fails: any
//! JSON gives a value.

use std::collections::HashMap;
use std::sync::Arc;

use cel::Value as Cel;
use serde_json::Value;

/// Words of the CEL grammar a property name must not be (Kubernetes `celReservedSymbols`).
const RESERVED: &[&str] = &[
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

/// A property name as rules name it, or `None` when it cannot be written in CEL.
pub(crate) fn escape(name: &str) -> Option<String> {
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    if RESERVED.contains(&name) {
        return Some(format!("__{name}__"));
    }
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("__") {
            out.push_str("__underscores__");
            rest = &rest[2..];
            continue;
        }
        match c {
            '.' => out.push_str("__dot__"),
            '-' => out.push_str("__dash__"),
            '/' => out.push_str("__slash__"),
            c if c.is_ascii_alphanumeric() || c == '_' => out.push(c),
            _ => return None,
        }
        rest = &rest[c.len_utf8()..];
    }
    Some(out)
}

/// `value` as CEL sees it under `schema`.
pub(crate) fn to_cel(schema: &Value, value: &Value) -> Cel {
    match value {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => {
            let double = schema.get("type").and_then(Value::as_str) == Some("number");
            match (n.as_i64(), n.as_u64()) {
                (Some(i), _) if !double => Cel::Int(i),
                (None, Some(u)) if !double => Cel::UInt(u),
                _ => Cel::Float(n.as_f64().unwrap_or(f64::NAN)),
            }
        }
        Value::String(s) => Cel::String(Arc::new(s.clone())),
        Value::Array(items) => {
            let item_schema = schema.get("items").unwrap_or(&Value::Null);
            Cel::List(Arc::new(
                items.iter().map(|i| to_cel(item_schema, i)).collect(),
            ))
        }
        Value::Object(map) => {
            let mut out: HashMap<String, Cel> = HashMap::with_capacity(map.len());
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                let keep_unknown = schema
                    .get("x-kubernetes-preserve-unknown-fields")
                    .and_then(Value::as_bool)
                    == Some(true);
                for (k, v) in map {
                    match (props.get(k), escape(k)) {
                        (Some(prop), Some(name)) => {
                            out.insert(name, to_cel(prop, v));
                        }
                        (None, Some(name)) if keep_unknown => {
                            out.insert(name, to_cel(&Value::Null, v));
                        }
                        _ => {}
                    }
                }
            } else {
                let each = schema
                    .get("additionalProperties")
                    .filter(|s| s.is_object())
                    .unwrap_or(&Value::Null);
                for (k, v) in map {
                    out.insert(k.clone(), to_cel(each, v));
                }
            }
            Cel::Map(out.into())
        }
    }
}

/// A Go duration (`1h30m`, `500ms`, `0s`, `-1.5h`) in nanoseconds.
pub(crate) fn duration_nanos(s: &str) -> Option<i64> {
    let (sign, mut rest) = match s.strip_prefix('-') {
        Some(r) => (-1.0, r),
        None => (1.0, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0_f64;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    #[allow(clippy::cast_possible_truncation)]
    Some((sign * total).round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn property_names_are_escaped_like_kubernetes() {
        for (name, want) in [
            ("namespace", Some("__namespace__")),
            ("sectionName", Some("sectionName")),
            ("a-b.c/d", Some("a__dash__b__dot__c__slash__d")),
            ("x__y", Some("x__underscores__y")),
            ("1st", None),
            ("a b", None),
        ] {
            assert_eq!(escape(name).as_deref(), want, "{name}");
        }
    }

    #[test]
    fn values_follow_the_schema() {
        let schema = json!({ "properties": {
            "namespace": { "type": "string" },
            "ratio": { "type": "number" },
            "labels": { "additionalProperties": { "type": "string" } },
        } });
        let v = to_cel(
            &schema,
            &json!({ "namespace": "a", "ratio": 1, "labels": { "app.kubernetes.io/name": "x" }, "unknown": 1 }),
        );
        let Cel::Map(m) = v else { panic!("{v:?}") };
        let m: HashMap<_, _> = m
            .map
            .iter()
            .map(|(k, v)| (format!("{k:?}"), v.clone()))
            .collect();
        assert_eq!(m.len(), 3, "{m:?}");
        assert!(m.keys().any(|k| k.contains("__namespace__")), "{m:?}");
        assert!(
            m.values()
                .any(|v| matches!(v, Cel::Float(f) if (*f - 1.0).abs() < f64::EPSILON)),
            "{m:?}"
        );
    }

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(duration_nanos("0s"), Some(0));
        assert_eq!(duration_nanos("0"), Some(0));
        assert_eq!(duration_nanos("1h30m"), Some(5_400_000_000_000));
        assert_eq!(duration_nanos("500ms"), Some(500_000_000));
        assert_eq!(duration_nanos("-1.5s"), Some(-1_500_000_000));
        assert_eq!(duration_nanos("10"), None);
        assert_eq!(duration_nanos("1d"), None);
        assert_eq!(duration_nanos(""), None);
    }
}
