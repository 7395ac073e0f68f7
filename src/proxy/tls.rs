//! TLS termination: certificates parsed from the LB contract and an SNI resolver that
//! reads the live snapshot, so an installed or replaced certificate serves the next
//! handshake without a restart.
//!
//! Owns: PEM → rustls `CertifiedKey` (with the key checked against the certificate), the
//! certificate store of a snapshot, choosing a certificate for an SNI name. Must never
//! log or expose key material; an unknown name is a clean handshake failure.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::config::{AdminTls, ConfigError};
use super::state::Store;
use podgate_core::model::Certificate;

/// Why a pushed certificate was refused.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("certificate {id}: {reason}")]
    BadCertificate { id: String, reason: String },
    #[error("TLS setup failed: {0}")]
    Setup(#[from] rustls::Error),
}

/// A parsed certificate with the DNS names it covers.
pub(crate) struct CertEntry {
    pub(crate) key: Arc<CertifiedKey>,
    pub(crate) names: Vec<String>,
    /// As installed, for the state file.
    pub(crate) source: Certificate,
}

impl fmt::Debug for CertEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertEntry")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

/// The crypto provider used everywhere in the proxy (ring).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses one certificate from the contract; refuses a chain without a matching key.
pub(crate) fn parse(cert: &Certificate) -> Result<CertEntry, TlsError> {
    let bad = |reason: String| TlsError::BadCertificate {
        id: cert.id.clone(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(cert.cert_pem.0.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("cert_pem is not valid PEM: {e}")))?;
    if chain.is_empty() {
        return Err(bad("cert_pem holds no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.0.as_bytes()).map_err(|e| match e {
        pem::Error::NoItemsFound => bad("key_pem holds no private key".into()),
        _ => bad("key_pem is not valid PEM".into()),
    })?;
    let names = webpki::EndEntityCert::try_from(&chain[0])
        .map_err(|e| bad(format!("cert_pem: cannot parse the certificate: {e}")))?
        .valid_dns_names()
        .map(str::to_ascii_lowercase)
        .collect();
    let key = CertifiedKey::from_der(chain, key, &provider())
        .map_err(|e| bad(format!("key_pem does not fit cert_pem: {e}")))?;
    Ok(CertEntry {
        key: Arc::new(key),
        names,
        source: cert.clone(),
    })
}

/// The certificates of one snapshot, by id and by the names they cover.
#[derive(Debug, Default, Clone)]
pub(crate) struct CertStore {
    by_id: HashMap<String, Arc<CertEntry>>,
    /// Name (`a.example.com` or `*.example.com`) → id; the smallest id wins a tie so
    /// that the choice is deterministic.
    by_name: HashMap<String, String>,
}

impl CertStore {
    pub(crate) fn with_changes(
        &self,
        upserts: Vec<(String, CertEntry)>,
        removals: &[String],
    ) -> Self {
        let mut by_id = self.by_id.clone();
        for id in removals {
            by_id.remove(id);
        }
        for (id, entry) in upserts {
            by_id.insert(id, Arc::new(entry));
        }
        let mut by_name: HashMap<String, String> = HashMap::new();
        for (id, entry) in &by_id {
            for name in &entry.names {
                let slot = by_name.entry(name.clone()).or_insert_with(|| id.clone());
                if id < slot {
                    slot.clone_from(id);
                }
            }
        }
        Self { by_id, by_name }
    }

    pub(crate) fn get(&self, id: &str) -> Option<&Arc<CertEntry>> {
        self.by_id.get(id)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&String, &Arc<CertEntry>)> {
        self.by_id.iter()
    }

    /// A certificate whose own names cover `host` (exact, then one-label wildcard).
    fn by_name(&self, host: &str) -> Option<&Arc<CertEntry>> {
        let id = self.by_name.get(host).or_else(|| {
            let (_, rest) = host.split_once('.')?;
            self.by_name.get(&format!("*.{rest}"))
        })?;
        self.by_id.get(id)
    }
}

/// Chooses the certificate for a handshake from the live snapshot: the certificate
/// the route table names for that host, else one whose names cover it.
#[derive(Debug)]
pub(crate) struct SniResolver {
    store: Arc<Store>,
    /// Certificate id for handshakes without a usable SNI name.
    default: Option<String>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let snap = self.store.load();
        let default = || {
            let id = self.default.as_deref()?;
            snap.certs.get(id).map(|e| Arc::clone(&e.key))
        };
        let Some(name) = hello.server_name() else {
            let found = default();
            if found.is_none() {
                tracing::debug!("TLS handshake without SNI and no default certificate");
            }
            return found;
        };
        let name = name.to_ascii_lowercase();
        let by_route = snap
            .router
            .tls_host(&name)
            .and_then(|h| h.tls.as_deref())
            .and_then(|id| snap.certs.get(id));
        let found = by_route
            .or_else(|| snap.certs.by_name(&name))
            .map(|e| Arc::clone(&e.key))
            .or_else(default);
        if found.is_none() {
            tracing::debug!(sni = %name, "no certificate for SNI name");
        }
        found
    }
}

/// The rustls server configuration for the HTTPS listener: SNI from the snapshot,
/// ALPN h2 then http/1.1.
pub(crate) fn server_config(
    store: Arc<Store>,
    default: Option<String>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver { store, default }));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The rustls configuration of the admin listener (see [`AdminTls`]). Every error names
/// the configuration field it comes from.
pub(crate) fn admin_server_config(
    tls: &AdminTls,
) -> Result<Arc<rustls::ServerConfig>, ConfigError> {
    let invalid = |field: &'static str, reason: String| ConfigError::Invalid { field, reason };
    let read = |field: &'static str, path: &std::path::Path| {
        std::fs::read(path)
            .map_err(|e| invalid(field, format!("cannot read {}: {e}", path.display())))
    };
    let chain = CertificateDer::pem_slice_iter(&read("admin.tls.cert_file", &tls.cert_file)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("admin.tls.cert_file", format!("not valid PEM: {e}")))?;
    if chain.is_empty() {
        return Err(invalid(
            "admin.tls.cert_file",
            "holds no certificate".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&read("admin.tls.key_file", &tls.key_file)?).map_err(
        |e| match e {
            pem::Error::NoItemsFound => {
                invalid("admin.tls.key_file", "holds no private key".into())
            }
            e => invalid("admin.tls.key_file", format!("not valid PEM: {e}")),
        },
    )?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("admin.tls", e.to_string()))?;
    let builder = match &tls.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for ca in CertificateDer::pem_slice_iter(&read("admin.tls.client_ca_file", path)?) {
                let ca = ca.map_err(|e| {
                    invalid("admin.tls.client_ca_file", format!("not valid PEM: {e}"))
                })?;
                roots
                    .add(ca)
                    .map_err(|e| invalid("admin.tls.client_ca_file", e.to_string()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .map_err(|e| invalid("admin.tls.client_ca_file", e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        invalid(
            "admin.tls.key_file",
            format!("does not fit the certificate: {e}"),
        )
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
