//! The admin web UI and the read API it (and the CLI) use, on the controller's admin
//! listener: `/` and `/ui/*` (static files embedded in the binary, no build step),
//! `/ui/session`, `/ui/login`, `/ui/logout` (the token login, `session.rs`), and
//! `/v1/overview`, `/v1/apps`, `/v1/why`, `/v1/explain`, `/v1/events` (server-sent
//! events). Everything here reads the same snapshots as `/v1/state`; the writes the
//! page makes are the weights API's (`controller::weights`).

mod apps;
mod events;
mod live;
mod overview;
pub(crate) mod session;
mod why;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::admin::AdminState;
use super::weights::Writes;
use crate::admin_http;

pub(crate) use live::{Live, Source};
pub(crate) use session::Sessions;

/// The admin listener's body type: whole answers and the event stream.
pub(crate) type Body = UnsyncBoxBody<Bytes, Infallible>;

pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// Whether `path` is served here.
pub(crate) fn owns(path: &str) -> bool {
    matches!(
        path,
        "/" | "/ui/app.js"
            | "/ui/style.css"
            | "/ui/session"
            | "/ui/login"
            | "/ui/logout"
            | "/v1/overview"
            | "/v1/apps"
            | "/v1/why"
            | "/v1/explain"
            | "/v1/events"
    )
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    admin_http::respond(status, "text/plain; charset=utf-8", full(body.into()))
}

fn json_reply(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    admin_http::json(status, value, admin_http::Style::Compact, full)
}

fn asset(content_type: &'static str, body: &'static str) -> Response<Body> {
    let mut r = admin_http::respond(StatusCode::OK, content_type, full(body));
    let h = r.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        http::HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    h.insert(
        "x-content-type-options",
        http::HeaderValue::from_static("nosniff"),
    );
    r
}

pub(crate) async fn handle(state: &Arc<AdminState>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let method = req.method().clone();
    match (method, path.as_str()) {
        (Method::GET, "/") => asset("text/html; charset=utf-8", INDEX_HTML),
        (Method::GET, "/ui/app.js") => asset("text/javascript; charset=utf-8", APP_JS),
        (Method::GET, "/ui/style.css") => asset("text/css; charset=utf-8", STYLE_CSS),
        (Method::GET, "/ui/session") => session_view(state, &req),
        (Method::POST, "/ui/login") => login(state, req).await,
        (Method::POST, "/ui/logout") => {
            state.sessions.end(req.headers());
            let mut r = json_reply(StatusCode::OK, &json!({ "logged_in": false }));
            if let Ok(v) = http::HeaderValue::from_str(&session::set_cookie(None)) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        (Method::GET, "/v1/overview") => json_reply(StatusCode::OK, &overview::overview(state)),
        (Method::GET, "/v1/apps") => {
            let (q, page, per_page) = apps::query(query.as_deref());
            json_reply(StatusCode::OK, &apps::apps(state, &q, page, per_page).await)
        }
        (Method::GET, "/v1/why") => match why::WhyQuery::parse(query.as_deref()) {
            Ok(q) => json_reply(StatusCode::OK, &why::why(state, q).await),
            Err(e) => json_reply(StatusCode::BAD_REQUEST, &json!({ "error": e })),
        },
        (Method::GET, "/v1/explain") => match why::explain(state, query.as_deref()) {
            Ok(e) => json_reply(StatusCode::OK, &e),
            Err(e) => json_reply(StatusCode::BAD_REQUEST, &json!({ "error": e })),
        },
        (Method::GET, "/v1/events") => {
            // A quarter of the listener's connections at most: probes and the API
            // always find a slot.
            let Ok(slot) = state.event_slots.clone().try_acquire_owned() else {
                return text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many event streams open; the page falls back to reloading\n",
                );
            };
            let body = StreamBody::new(events::stream(state.clone(), slot)).boxed_unsync();
            let mut r = Response::new(body);
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/event-stream"),
            );
            h.insert(
                header::CACHE_CONTROL,
                http::HeaderValue::from_static("no-cache"),
            );
            r
        }
        (_, _) => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
    }
}

/// `GET /ui/session`: whether writes need a login, and the page's CSRF token when its
/// session is live (a page elsewhere cannot read this answer: no CORS).
fn session_view(state: &AdminState, req: &Request<Incoming>) -> Response<Body> {
    let csrf = state.sessions.csrf_of(req.headers());
    json_reply(
        StatusCode::OK,
        &json!({ "writes": state.weights.writes_mode(), "logged_in": csrf.is_some(), "csrf": csrf }),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    token: String,
}

/// `POST /ui/login` with `{"token": "…"}`: a session cookie and its CSRF token.
async fn login(state: &AdminState, req: Request<Incoming>) -> Response<Body> {
    let body = match Limited::new(req.into_body(), 4096).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return json_reply(
                StatusCode::BAD_REQUEST,
                &json!({ "error": format!("cannot read the body: {e}") }),
            );
        }
    };
    let login: Login = match serde_json::from_slice(&body) {
        Ok(l) => l,
        Err(e) => {
            return json_reply(
                StatusCode::BAD_REQUEST,
                &json!({ "error": format!("invalid request: {e}") }),
            );
        }
    };
    let accepted = match state.weights.writes() {
        Writes::Token(token) => bool::from(login.token.trim().as_bytes().ct_eq(token.as_bytes())),
        Writes::Loopback => true,
        Writes::Refused { .. } => {
            return json_reply(
                StatusCode::FORBIDDEN,
                &json!({ "error": "writes are off: no admin.token_file, and the admin listener is not on loopback" }),
            );
        }
    };
    if !accepted {
        tracing::warn!("admin UI login refused: wrong token");
        return json_reply(StatusCode::UNAUTHORIZED, &json!({ "error": "wrong token" }));
    }
    let (id, csrf) = state.sessions.create();
    let mut r = json_reply(StatusCode::OK, &json!({ "logged_in": true, "csrf": csrf }));
    if let Ok(v) = http::HeaderValue::from_str(&session::set_cookie(Some(&id))) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}
