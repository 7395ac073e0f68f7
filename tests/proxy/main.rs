//! The built-in proxy over real TCP: routing, the admin API (the LB contract), TLS, HTTP/1.1 fast path, h2, WebSocket, limits and failures.

mod admin;
mod admin_mtls;
mod failures;
mod harness;
mod health;
mod http1;
mod limits;
mod observability;
mod openapi;
mod restart;
mod routing;
mod rules;
mod smuggling;
mod tls;
mod websocket;
