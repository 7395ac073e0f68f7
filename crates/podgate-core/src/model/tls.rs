//! TLS certificates from `kubernetes.io/tls` Secrets. The key never appears in logs,
//! `Debug` output or the admin view.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// PEM bytes that are secret: `Debug` prints a placeholder. Serialised only into the
/// LB contract, which is authenticated.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Pem(pub Arc<str>);

impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} PEM bytes redacted>", self.0.len())
    }
}

/// A certificate chain and key, identified by `namespace/secret-name`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    pub id: String,
    pub cert_pem: Pem,
    pub key_pem: Pem,
}
