//! The weights admin routes, on the controller's admin listener:
//! `GET /v1/weights`; `PUT /v1/weights` with `{"weights": "idc=20,tke=80", "app":
//! "ns/svc"}` (no app: global; `"weights": null`: back to configuration);
//! `POST /v1/migrations` with `{"app", "to", "step", "every"}`;
//! `DELETE /v1/migrations/<ns>/<svc>`; `PUT /v1/migrations/<ns>/<svc>` with
//! `{"paused": true|false}` (an operator's pause, kept in the ConfigMap). Writes need the bearer token when one is
//! configured (constant-time compare). Bad input is a 400 with the reason, and then
//! nothing changes. Answers once this replica applied the write.

use crate::admin_http;
use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use serde_json::json;

use podgate_core::model::ClusterName;
use podgate_core::weights::config_map::parse_weights;
use podgate_core::weights::{App, GLOBAL_KEY, Migration, parse_duration};

use super::store::{Edits, StoreError};
use super::{Weights, Writes};

const MAX_BODY: usize = 64 * 1024;
const APPLY_WAIT: Duration = Duration::from_secs(2);
const MIGRATIONS: &str = "/v1/migrations";

/// Whether `path` is one of these routes.
pub(crate) fn owns(path: &str) -> bool {
    path == "/v1/weights" || path == MIGRATIONS || path.starts_with("/v1/migrations/")
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, body: &impl Serialize) -> Reply {
    admin_http::json(status, body, admin_http::Style::Pretty, Full::new)
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Reply {
    reply(status, &json!({ "error": message.to_string() }))
}

fn store_error(e: &StoreError) -> Reply {
    let status = match e {
        StoreError::Conflict(_) => StatusCode::CONFLICT,
        StoreError::NoNamespace { .. } => StatusCode::SERVICE_UNAVAILABLE,
        StoreError::Api { .. } => StatusCode::BAD_GATEWAY,
    };
    error(status, e)
}

/// `PUT /v1/weights`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetWeights {
    weights: Option<String>,
    #[serde(default)]
    app: Option<String>,
}

fn default_step() -> u32 {
    10
}

fn default_every() -> String {
    "30s".to_owned()
}

/// `POST /v1/migrations`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartMigration {
    app: String,
    to: String,
    #[serde(default = "default_step")]
    step: u32,
    #[serde(default = "default_every")]
    every: String,
}

impl Weights {
    /// The answer refusing this write, if it is refused.
    fn refusal(&self, req: &Request<Incoming>, session: bool) -> Option<Reply> {
        match &self.writes {
            Writes::Loopback => None,
            Writes::Token(_) if session => None,
            Writes::Token(token) if admin_http::bearer_matches(req.headers(), token.as_bytes()) => {
                None
            }
            Writes::Token(_) => Some(error(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token",
            )),
            Writes::Refused { listen } => Some(error(
                StatusCode::FORBIDDEN,
                format!(
                    "admin writes need admin.token_file: the admin listener {listen} is not on loopback"
                ),
            )),
        }
    }

    /// Writes `edits` and waits until this replica applied them.
    async fn commit(&self, edits: &Edits, status: StatusCode) -> Reply {
        self.commit_at(edits, None, status).await
    }

    /// `commit` with a `resourceVersion` precondition: 409 when the ConfigMap moved on
    /// since `rv` (another replica's ramp step, a cancel) instead of undoing that.
    async fn commit_at(&self, edits: &Edits, rv: Option<&str>, status: StatusCode) -> Reply {
        match self.store.write(edits, rv).await {
            Ok(rv) => {
                self.wait_applied(&rv, APPLY_WAIT).await;
                reply(status, &self.view())
            }
            Err(e) => store_error(&e),
        }
    }

    async fn set_weights(&self, body: &[u8]) -> Reply {
        let request: SetWeights = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid request: {e}")),
        };
        let app = match request.app.as_deref().map(App::parse).transpose() {
            Ok(app) => app,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("app: {e}")),
        };
        let weights = match request
            .weights
            .as_deref()
            .map(|w| parse_weights(w, &self.cluster_names()))
            .transpose()
        {
            Ok(w) => w,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("weights: {e}")),
        };
        let mut edits = Edits::new();
        let value = weights.map(|w| w.to_string());
        match &app {
            Some(app) => {
                let (doc, _) = self.current();
                if let Some(m) = doc.migrations.get(app) {
                    if !m.done() {
                        return error(
                            StatusCode::CONFLICT,
                            format!(
                                "{app} is migrating to {}; cancel the migration first",
                                m.target
                            ),
                        );
                    }
                    edits.insert(app.migration_key(), None);
                }
                edits.insert(app.weights_key(), value);
            }
            None => {
                edits.insert(GLOBAL_KEY.to_owned(), value);
            }
        }
        self.commit(&edits, StatusCode::OK).await
    }

    async fn start_migration(&self, body: &[u8]) -> Reply {
        let request: StartMigration = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid request: {e}")),
        };
        let app = match App::parse(&request.app) {
            Ok(app) => app,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("app: {e}")),
        };
        let target = ClusterName::new(&request.to);
        if !self.cluster_names().contains(&target) {
            return error(
                StatusCode::BAD_REQUEST,
                format!("to: unknown cluster {:?}", request.to),
            );
        }
        let every = match parse_duration(&request.every) {
            Ok(d) => d,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("every: {e}")),
        };
        if let Some(m) = self.current().0.migrations.get(&app).filter(|m| !m.done()) {
            return error(
                StatusCode::CONFLICT,
                format!(
                    "{app} is already migrating to {}; cancel it first",
                    m.target
                ),
            );
        }
        let (percent, from) = self.starting_point(&app, &target);
        if from.is_empty() {
            return error(
                StatusCode::BAD_REQUEST,
                "to: there is no other cluster to migrate from",
            );
        }
        if percent >= 100 {
            return error(
                StatusCode::BAD_REQUEST,
                format!("{app} already sends all its traffic to {target}"),
            );
        }
        let migration = match Migration::new(target, request.step, every, percent, from) {
            Ok(m) => m,
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        };
        tracing::info!(%app, target = %migration.target, step = migration.step, every = %request.every, from_percent = percent, "migration started");
        let edits: Edits = [
            (app.weights_key(), Some(migration.weights().to_string())),
            (app.migration_key(), Some(migration.to_json())),
        ]
        .into_iter()
        .collect();
        self.commit(&edits, StatusCode::CREATED).await
    }

    /// The target's share of `app` now (percent, rounded down) and the other clusters'
    /// shares, which keep their proportion during the ramp.
    fn starting_point(&self, app: &App, target: &ClusterName) -> (u32, BTreeMap<ClusterName, u32>) {
        let mut upstreams = self.upstreams_of(app);
        upstreams.sort_by(|a, b| a.key.cmp(&b.key));
        if let Some(u) = upstreams.iter().find(|u| !u.shares.is_empty()) {
            let percent = u
                .shares
                .iter()
                .find(|(c, _)| c == target)
                .map_or(0, |(_, s)| s / 10);
            let from: BTreeMap<ClusterName, u32> = u
                .shares
                .iter()
                .filter(|(c, _)| c != target)
                .cloned()
                .collect();
            if !from.is_empty() {
                return (percent, from);
            }
        }
        let from = self
            .desired
            .read(podgate_core::index::Index::cluster_weights)
            .into_iter()
            .filter(|(c, _)| c != target)
            .collect();
        (0, from)
    }

    /// `PUT /v1/migrations/<ns>/<svc>` with `{"paused": bool}`.
    async fn pause_migration(&self, path: &str, body: &[u8]) -> Reply {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Pausing {
            paused: bool,
        }
        let raw = path.strip_prefix("/v1/migrations/").unwrap_or("");
        let app = match App::parse(raw) {
            Ok(app) => app,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("app: {e}")),
        };
        let pausing: Pausing = match serde_json::from_slice(body) {
            Ok(p) => p,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid request: {e}")),
        };
        let (doc, rv) = self.current();
        let Some(m) = doc.migrations.get(&app).cloned() else {
            return error(StatusCode::NOT_FOUND, format!("no migration of {app}"));
        };
        tracing::info!(%app, paused = pausing.paused, "migration paused or resumed by an operator");
        let held = podgate_core::weights::Migration {
            held: pausing.paused,
            ..m
        };
        let edits: Edits = [(app.migration_key(), Some(held.to_json()))]
            .into_iter()
            .collect();
        self.commit_at(&edits, rv.as_deref(), StatusCode::OK).await
    }

    async fn cancel_migration(&self, path: &str) -> Reply {
        let raw = path.strip_prefix("/v1/migrations/").unwrap_or("");
        let app = match App::parse(raw) {
            Ok(app) => app,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("app: {e}")),
        };
        if !self.current().0.migrations.contains_key(&app) {
            return error(StatusCode::NOT_FOUND, format!("no migration of {app}"));
        }
        tracing::info!(%app, "migration cancelled; its weights stay where the ramp stood");
        let edits: Edits = [(app.migration_key(), None)].into_iter().collect();
        self.commit(&edits, StatusCode::OK).await
    }
}

/// Serves one request on these routes.
/// `session`: the request comes from a logged-in page of the admin UI (its session
/// cookie and CSRF token checked).
pub(crate) async fn handle(weights: &Weights, req: Request<Incoming>, session: bool) -> Reply {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    if method == Method::GET && (path == "/v1/weights" || path == MIGRATIONS) {
        return reply(StatusCode::OK, &weights.view());
    }
    let allowed = matches!(
        (&method, path.as_str()),
        (&Method::PUT, "/v1/weights") | (&Method::POST, MIGRATIONS)
    ) || (matches!(method, Method::DELETE | Method::PUT)
        && path.starts_with("/v1/migrations/"));
    if !allowed {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} {path} is not served"),
        );
    }
    if let Some(refused) = weights.refusal(&req, session) {
        tracing::warn!(%method, %path, status = %refused.status(), "admin write refused");
        return refused;
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}"),
            );
        }
    };
    match method {
        Method::PUT if path == "/v1/weights" => weights.set_weights(&body).await,
        Method::PUT => weights.pause_migration(&path, &body).await,
        Method::POST => weights.start_migration(&body).await,
        _ => weights.cancel_migration(&path).await,
    }
}
