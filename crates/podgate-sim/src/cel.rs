//! The CEL rules (`x-kubernetes-validations`) of a CRD schema, evaluated on writes the
//! way a real kube-apiserver evaluates them (k8s-wire 15a), with the `cel` crate.
//!
//! Owns: compiling rules (once per distinct text, for the whole process), binding `self`
//! to the value of the node that carries a rule, after defaults were filled, at every
//! depth (properties, map values, array items), and the 422 causes of a failed rule:
//! `Invalid value: "<schema type>": <message>` on that node's path, or
//! `<error> evaluating rule: <message>` when the rule cannot be evaluated on the value
//! (a missing field: `no such key: options`). Transition rules (those naming `oldSelf`)
//! run only on updates, with the old value of the same field, or of the item with the
//! same keys in an `x-kubernetes-list-type: map` list; elsewhere (new fields, other
//! lists, creates) they are skipped, as the real server skips them.
//!
//! Must never refuse an object because of the sim's own limits: a rule that does not
//! parse, calls a function outside [`SUPPORTED`], or fails on a type or overload the crate
//! does not handle is skipped, counted ([`census`]) and reported once on stderr. Known
//! differences from the real server: `duration()` gives nanoseconds as an int (enough to
//! compare durations, nothing more), no cost budget and no static type check of rules
//! (the real server refuses such CRDs), and when both sides of `||` fail the crate
//! reports the second error where cel-go reports the first.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use cel::{Context, Env, ExecutionError, Program, Value as Cel};
use parking_lot::Mutex;
use serde_json::Value;

use super::cel_value::{duration_nanos, to_cel};
use super::status::FieldError;

/// Functions the sim evaluates as the real server does (besides operators and the
/// macros `has`, `all`, `exists`, `exists_one`, `filter`, `map`, which the parser
/// expands): the standard library's, the Kubernetes strings library's, and `duration`.
pub(crate) const SUPPORTED: &[&str] = &[
    "size",
    "contains",
    "startsWith",
    "endsWith",
    "matches",
    "bool",
    "double",
    "int",
    "uint",
    "string",
    "dyn",
    "duration",
    "charAt",
    "indexOf",
    "lastIndexOf",
    "join",
    "lowerAscii",
    "upperAscii",
    "trim",
    "replace",
    "split",
    "substring",
    "format",
    "reverse",
    "strings.quote",
];

/// One expression, compiled, or why the sim skips it.
type Compiled = Result<Arc<Rule>, String>;

pub(crate) struct Rule {
    program: Program,
    uses_old_self: bool,
    /// Reported on stderr already (a failure the crate could not evaluate).
    reported: std::sync::atomic::AtomicBool,
}

fn env() -> &'static Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Env::stdlib();
        // Kubernetes has the strings library; registering it on a fresh stdlib
        // cannot clash.
        let _ = env.add_extension(cel::extensions::strings);
        Arc::new(env)
    })
}

fn is_operator(name: &str) -> bool {
    name.starts_with(['_', '@', '!', '-'])
}

/// The rule compiled, from the process-wide cache.
fn compiled(source: &str) -> Compiled {
    static CACHE: OnceLock<Mutex<HashMap<String, Compiled>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Mutex::default);
    if let Some(hit) = cache.lock().get(source) {
        return hit.clone();
    }
    // The ANTLR parser recurses deeply in debug builds: parse on a thread with room.
    let result = std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(16 << 20)
            .spawn_scoped(s, || compile(source))
            .ok()
            .and_then(|t| t.join().ok())
    })
    .unwrap_or_else(|| Err("the compiler failed".to_owned()));
    if let Err(why) = &result {
        eprintln!("podgate-sim: CEL rule skipped ({why}): {source}");
    }
    cache.lock().insert(source.to_owned(), result.clone());
    result
}

fn compile(source: &str) -> Compiled {
    let program = env()
        .compile(source)
        .map_err(|e| format!("does not parse: {e}"))?;
    let refs = program.references();
    if let Some(f) = refs
        .functions()
        .into_iter()
        .find(|f| !is_operator(f) && !SUPPORTED.contains(f))
    {
        return Err(format!("calls {f}(), which the sim does not have"));
    }
    let uses_old_self = refs.has_variable("oldSelf");
    Ok(Arc::new(Rule {
        program,
        uses_old_self,
        reported: false.into(),
    }))
}

/// How many CEL rules a schema carries, and which of them the sim skips and why.
#[derive(Debug, Default)]
pub(crate) struct Census {
    pub(crate) total: usize,
    pub(crate) skipped: Vec<(String, String)>,
}

/// Compiles every rule of the schema (filling the cache) and counts them.
pub(crate) fn census(schema: &Value, out: &mut Census) {
    match schema {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "x-kubernetes-validations" {
                    for source in v.as_array().into_iter().flatten().filter_map(rule_text) {
                        out.total += 1;
                        if let Err(why) = compiled(source) {
                            out.skipped.push((source.to_owned(), why));
                        }
                    }
                } else if k != "default" && k != "enum" && k != "example" {
                    census(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| census(i, out)),
        _ => {}
    }
}

fn rule_text(rule: &Value) -> Option<&str> {
    rule.get("rule").and_then(Value::as_str)
}

/// Evaluates every rule of `schema` on `new` (`old`: the stored object, on updates) and
/// adds a cause per failed rule, in the real server's order: a node's rules, then its
/// fields' (by name), then its items'.
pub(crate) fn check(schema: &Value, new: &Value, old: Option<&Value>, out: &mut Vec<FieldError>) {
    let mut ctx = Context::with_env(env().clone());
    let duration = |s: Arc<String>| -> Result<i64, ExecutionError> {
        duration_nanos(&s).ok_or_else(|| {
            ExecutionError::function_error("duration", format!("invalid duration {s:?}"))
        })
    };
    let _ = ctx.add_function("duration", duration);
    walk(&ctx, schema, new, old, "", out);
}

fn walk(
    ctx: &Context<'_, '_>,
    schema: &Value,
    value: &Value,
    old: Option<&Value>,
    path: &str,
    out: &mut Vec<FieldError>,
) {
    if value.is_null() {
        // Only non-null values are validated; presence is for the parent's rules.
        return;
    }
    if let Some(rules) = schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
    {
        node_rules(ctx, schema, rules, value, old, path, out);
    }
    match value {
        Value::Object(map) => {
            let atomic =
                schema.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic");
            let old_of = |k: &str| old.filter(|_| !atomic).and_then(|o| o.get(k));
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, child) in map {
                    if let Some(prop) = props.get(k) {
                        walk(ctx, prop, child, old_of(k), &field(path, k), out);
                    }
                }
            } else if let Some(each) = schema.get("additionalProperties").filter(|s| s.is_object())
            {
                for (k, child) in map {
                    walk(ctx, each, child, old_of(k), &format!("{path}[{k}]"), out);
                }
            }
        }
        Value::Array(items) => {
            let Some(item_schema) = schema.get("items") else {
                return;
            };
            let old_items = old.and_then(Value::as_array);
            for (i, item) in items.iter().enumerate() {
                let old_item = old_items.and_then(|o| same_item(schema, item, o));
                walk(
                    ctx,
                    item_schema,
                    item,
                    old_item,
                    &format!("{path}[{i}]"),
                    out,
                );
            }
        }
        _ => {}
    }
}

fn field(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// The old item a new one is compared with: only `map` lists correlate items (by their keys).
fn same_item<'a>(schema: &Value, item: &Value, old: &'a [Value]) -> Option<&'a Value> {
    if schema.get("x-kubernetes-list-type").and_then(Value::as_str) != Some("map") {
        return None;
    }
    let keys = schema.get("x-kubernetes-list-map-keys")?.as_array()?;
    old.iter().find(|o| {
        keys.iter()
            .filter_map(Value::as_str)
            .all(|k| o.get(k) == item.get(k))
    })
}

fn node_rules(
    ctx: &Context<'_, '_>,
    schema: &Value,
    rules: &[Value],
    value: &Value,
    old: Option<&Value>,
    path: &str,
    out: &mut Vec<FieldError>,
) {
    let ty = schema.get("type").and_then(Value::as_str).unwrap_or("");
    let this = to_cel(schema, value);
    let before = old.map(|o| to_cel(schema, o));
    for rule in rules {
        let Some(source) = rule_text(rule) else {
            continue;
        };
        let Ok(compiled) = compiled(source) else {
            continue;
        };
        if compiled.uses_old_self && before.is_none() {
            continue;
        }
        let mut scope = ctx.new_inner_scope();
        scope.add_variable_from_value("self", this.clone());
        if let Some(before) = &before {
            scope.add_variable_from_value("oldSelf", before.clone());
        }
        let at = if path.is_empty() { "<nil>" } else { path };
        match compiled.program.execute(&scope) {
            Ok(Cel::Bool(true)) => {}
            Ok(_) => out.push(failed(&scope, rule, ty, at)),
            Err(e) if beyond_the_sim(&e) => {
                if !compiled
                    .reported
                    .swap(true, std::sync::atomic::Ordering::Relaxed)
                {
                    eprintln!("podgate-sim: CEL rule skipped ({e}): {source}");
                }
            }
            Err(e) => out.push(FieldError::invalid(
                at.to_owned(),
                ty,
                &format!(
                    "{} evaluating rule: {}",
                    go_error(&e),
                    rule_error_string(rule)
                ),
            )),
        }
    }
}

/// Errors of the crate, not of the object: the real server's type check would have
/// refused such a rule in the CRD, or cel-go evaluates it.
fn beyond_the_sim(e: &ExecutionError) -> bool {
    !matches!(
        e,
        ExecutionError::NoSuchKey(_)
            | ExecutionError::IndexOutOfBounds(_)
            | ExecutionError::DivisionByZero(_)
            | ExecutionError::RemainderByZero(_)
            | ExecutionError::Overflow(..)
            | ExecutionError::FunctionError { .. }
    )
}

/// The error as cel-go words it, where the two differ.
fn go_error(e: &ExecutionError) -> String {
    match e {
        ExecutionError::NoSuchKey(k) => format!("no such key: {k}"),
        ExecutionError::IndexOutOfBounds(i) => format!("index out of bounds: {i:?}"),
        ExecutionError::DivisionByZero(_) => "division by zero".to_owned(),
        ExecutionError::RemainderByZero(_) => "modulus by zero".to_owned(),
        ExecutionError::FunctionError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

fn trimmed<'a>(rule: &'a Value, key: &str) -> Option<&'a str> {
    rule.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// The message, else the rule itself (`ruleErrorString` of the real server).
fn rule_error_string(rule: &Value) -> &str {
    trimmed(rule, "message")
        .or_else(|| trimmed(rule, "rule"))
        .unwrap_or("")
}

/// The cause of a rule that evaluated to something else than `true`.
fn failed(scope: &Context<'_, '_>, rule: &Value, ty: &str, at: &str) -> FieldError {
    let detail =
        message_expression(scope, rule).unwrap_or_else(|| match trimmed(rule, "message") {
            Some(m) => m.to_owned(),
            None => format!("failed rule: {}", rule_error_string(rule)),
        });
    let at = match trimmed(rule, "fieldPath") {
        Some(fp) => {
            let fp = fp.trim_start_matches('.');
            if at == "<nil>" {
                fp.to_owned()
            } else {
                format!("{at}.{fp}")
            }
        }
        None => at.to_owned(),
    };
    match rule.get("reason").and_then(Value::as_str) {
        Some("FieldValueForbidden") => FieldError {
            reason: "FieldValueForbidden",
            field: at,
            message: format!("Forbidden: {detail}"),
        },
        Some("FieldValueRequired") => FieldError::required(at, &detail),
        Some("FieldValueDuplicate") => FieldError {
            reason: "FieldValueDuplicate",
            field: at,
            message: format!("Duplicate value: {}", serde_json::json!(ty)),
        },
        _ => FieldError::invalid(at, ty, &detail),
    }
}

/// `messageExpression`'s string, when it gives a usable one (else the real server falls
/// back to `message`).
fn message_expression(scope: &Context<'_, '_>, rule: &Value) -> Option<String> {
    let source = trimmed(rule, "messageExpression")?;
    let compiled = compiled(source).ok()?;
    match compiled.program.execute(scope) {
        Ok(Cel::String(s)) => {
            let s = s.trim();
            (!s.is_empty() && !s.contains('\n')).then(|| s.to_owned())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_gateway_api_rule_compiles() {
        let mut census = Census::default();
        let mut versions = 0;
        for doc in serde_yaml_ng::Deserializer::from_str(crate::GATEWAY_API_CRDS) {
            let crd: Value = serde::Deserialize::deserialize(doc).unwrap();
            for v in crd["spec"]["versions"].as_array().unwrap() {
                versions += 1;
                super::census(&v["schema"]["openAPIV3Schema"], &mut census);
            }
        }
        println!(
            "{} CEL rules in {versions} versions of the Gateway API CRDs, {} skipped",
            census.total,
            census.skipped.len()
        );
        assert_eq!(census.total, 212);
        assert!(census.skipped.is_empty(), "{:#?}", census.skipped);
    }

    fn causes(schema: &Value, new: &Value, old: Option<&Value>) -> Vec<(String, String)> {
        let mut out = Vec::new();
        check(schema, new, old, &mut out);
        out.into_iter().map(|e| (e.field, e.message)).collect()
    }

    fn rule(rule: &str, message: &str) -> Value {
        json!({ "rule": rule, "message": message })
    }

    #[test]
    fn rules_bind_self_at_every_depth() {
        let schema = json!({ "type": "object", "properties": { "spec": { "type": "object", "properties": {
            "items": { "type": "array", "items": { "type": "object",
                "x-kubernetes-validations": [rule("self.value.startsWith('/')", "must be absolute")],
                "properties": { "value": { "type": "string" } } } },
            "labels": { "type": "object", "additionalProperties": { "type": "string",
                "x-kubernetes-validations": [{ "rule": "self.size() < 3" }] } },
        } } } });
        let obj = json!({ "spec": { "items": [{ "value": "/a" }, { "value": "b" }], "labels": { "k": "long" } } });
        assert_eq!(
            causes(&schema, &obj, None),
            [
                (
                    "spec.items[1]".to_owned(),
                    "Invalid value: \"object\": must be absolute".to_owned()
                ),
                (
                    "spec.labels[k]".to_owned(),
                    "Invalid value: \"string\": failed rule: self.size() < 3".to_owned()
                ),
            ]
        );
        assert_eq!(
            causes(
                &schema,
                &json!({ "spec": { "items": [{ "value": "/a" }] } }),
                None
            ),
            []
        );
    }

    #[test]
    fn a_missing_field_is_an_evaluation_error_and_has_tests_presence() {
        let schema = json!({ "type": "object",
            "x-kubernetes-validations": [
                rule("self.a > 0 || self.b > 0", "a or b"),
                rule("!has(self.c) || self.c != ''", "c not empty"),
            ],
            "properties": { "a": { "type": "integer" }, "b": { "type": "integer" }, "c": { "type": "string" } } });
        assert_eq!(causes(&schema, &json!({ "b": 1 }), None), []);
        assert_eq!(
            causes(&schema, &json!({ "a": 0, "c": "" }), None),
            [
                (
                    "<nil>".to_owned(),
                    "Invalid value: \"object\": no such key: b evaluating rule: a or b".to_owned()
                ),
                (
                    "<nil>".to_owned(),
                    "Invalid value: \"object\": c not empty".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn transition_rules_run_on_updates_only() {
        let schema = json!({ "type": "object", "properties": { "name": { "type": "string",
            "x-kubernetes-validations": [rule("self == oldSelf", "Value is immutable")] } } });
        let new = json!({ "name": "b" });
        assert_eq!(causes(&schema, &new, None), []);
        assert_eq!(causes(&schema, &new, Some(&json!({ "name": "b" }))), []);
        assert_eq!(
            causes(&schema, &new, Some(&json!({ "name": "a" }))),
            [(
                "name".to_owned(),
                "Invalid value: \"string\": Value is immutable".to_owned()
            )]
        );
    }

    #[test]
    fn what_the_sim_cannot_evaluate_never_refuses() {
        let schema = json!({ "type": "object", "x-kubernetes-validations": [
            rule("isIP(self.ip)", "not an IP"),
            rule("self.ip +", "does not parse"),
            rule("self.ip > 1", "string against int"),
        ], "properties": { "ip": { "type": "string" } } });
        assert_eq!(causes(&schema, &json!({ "ip": "x" }), None), []);
        let mut census = Census::default();
        super::census(&schema, &mut census);
        assert_eq!((census.total, census.skipped.len()), (3, 2), "{census:?}");
    }

    #[test]
    fn message_expression_reason_and_field_path() {
        let schema = json!({ "type": "object", "properties": { "spec": { "type": "object",
            "x-kubernetes-validations": [
                { "rule": "self.n < 3", "messageExpression": "'n is ' + string(self.n)" },
                { "rule": "self.n < 2", "reason": "FieldValueForbidden", "fieldPath": ".n", "message": "too big" },
            ],
            "properties": { "n": { "type": "integer" } } } } });
        assert_eq!(
            causes(&schema, &json!({ "spec": { "n": 5 } }), None),
            [
                (
                    "spec".to_owned(),
                    "Invalid value: \"object\": n is 5".to_owned()
                ),
                ("spec.n".to_owned(), "Forbidden: too big".to_owned()),
            ]
        );
    }
}
