//! Checks that a Secret's PEM holds a certificate chain and a private key that rustls
//! can use. Pure: parses bytes, never logs them.

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

/// `Err` carries a reason fit for an Event: it never quotes the key.
pub(crate) fn check_pem(cert: &[u8], key: &[u8]) -> Result<(), String> {
    let certs: Vec<CertificateDer<'_>> = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls.crt is not valid PEM: {e}"))?;
    if certs.is_empty() {
        return Err("tls.crt holds no certificate".to_owned());
    }
    let key = PrivateKeyDer::from_pem_slice(key)
        .map_err(|_| "tls.key holds no usable private key".to_owned())?;
    rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|_| "tls.key is not a supported RSA, ECDSA or Ed25519 key".to_owned())?;
    Ok(())
}
