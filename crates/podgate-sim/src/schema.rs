//! What a CRD's OpenAPI v3 schema makes the real API server do to a custom resource, as
//! far as podgate's tests need it: fill in `default:` values (at every depth, in array
//! items too; k8s-wire 14) and refuse arrays longer than `maxItems` with a 422
//! `FieldValueTooMany` (k8s-wire 15b). The CEL rules (`x-kubernetes-validations`) are
//! evaluated by `cel.rs` after the defaults, on the whole object at every write, unless
//! an error that blocks them was found (`FieldError::blocks_cel`: too many, required,
//! ...), in which case the server adds that they were not checked (15b). Other OpenAPI
//! checks (`pattern`, `maxLength`, `enum`, `required`) are not made.

use serde_json::{Map, Value};

use super::status::FieldError;

/// Fills the schema's defaults into `value`, in place.
pub(crate) fn fill_defaults(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            let Some(props) = schema.get("properties").and_then(Value::as_object) else {
                return;
            };
            for (name, prop) in props {
                if !map.contains_key(name)
                    && let Some(d) = prop.get("default")
                {
                    map.insert(name.clone(), d.clone());
                }
                if let Some(child) = map.get_mut(name) {
                    fill_defaults(prop, child);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    fill_defaults(item_schema, item);
                }
            }
        }
        _ => {}
    }
}

/// Arrays longer than their `maxItems`, as the server names them (`spec.rules`).
pub(crate) fn too_many(schema: &Value, value: &Value, path: &str, out: &mut Vec<FieldError>) {
    match value {
        Value::Object(map) => {
            let Some(props) = schema.get("properties").and_then(Value::as_object) else {
                return;
            };
            for (name, child) in map {
                if let Some(prop) = props.get(name) {
                    let field = if path.is_empty() {
                        name.clone()
                    } else {
                        format!("{path}.{name}")
                    };
                    too_many(prop, child, &field, out);
                }
            }
        }
        Value::Array(items) => {
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && items.len() as u64 > max
            {
                out.push(FieldError::too_many(path.to_owned(), items.len(), max));
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    too_many(item_schema, item, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// Whether the schema carries CEL rules (`x-kubernetes-validations`) anywhere.
pub(crate) fn has_cel(schema: &Value) -> bool {
    match schema {
        Value::Object(map) => {
            map.contains_key("x-kubernetes-validations") || map.values().any(has_cel)
        }
        Value::Array(items) => items.iter().any(has_cel),
        _ => false,
    }
}

/// A custom resource with its keys sorted, as the real server writes them (k8s-wire 14).
pub(crate) fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for k in keys {
                out.insert(k.clone(), sorted(&map[k]));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_fill_missing_fields_at_every_depth() {
        let schema = json!({ "properties": { "spec": { "properties": { "rules": {
            "maxItems": 2,
            "items": { "properties": {
                "matches": { "default": [{ "path": { "type": "PathPrefix", "value": "/" } }] },
                "weight": { "default": 1 },
            } },
        } } } } });
        let mut obj = json!({ "spec": { "rules": [{}, { "weight": 5, "matches": [] }] } });
        fill_defaults(&schema, &mut obj);
        assert_eq!(obj["spec"]["rules"][0]["weight"], 1);
        assert_eq!(
            obj["spec"]["rules"][0]["matches"][0]["path"]["type"],
            "PathPrefix"
        );
        assert_eq!(
            obj["spec"]["rules"][1],
            json!({ "weight": 5, "matches": [] })
        );
        let mut errors = Vec::new();
        too_many(
            &schema,
            &json!({ "spec": { "rules": [1, 2, 3] } }),
            "",
            &mut errors,
        );
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "spec.rules");
        assert_eq!(errors[0].message, "Too many: 3: must have at most 2 items");
    }
}
