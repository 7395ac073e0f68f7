//! The check every certificate passes before an adapter hands it to its LB, so that a
//! certificate the LB would refuse is refused alone, with its id, before anything in the
//! LB changed (the sync layer then quarantines it and lands the rest).
//!
//! Owns: parsing a contract [`Certificate`] as the built-in proxy does (PEM, the leaf's
//! DER, a key of a kind TLS can use, the key fitting the leaf). Must never put key
//! material into an error.

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::LbError;
use podgate_core::model::Certificate;

/// `Err(Rejected)` naming the certificate and what is wrong with it.
pub(crate) fn check(cert: &Certificate) -> Result<(), LbError> {
    let bad = |reason: &str| LbError::Rejected(format!("certificate {}: {reason}", cert.id));
    let chain = CertificateDer::pem_slice_iter(cert.cert_pem.0.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| bad("cert_pem is not valid PEM"))?;
    let Some(leaf) = chain.first() else {
        return Err(bad("cert_pem holds no certificate"));
    };
    webpki::EndEntityCert::try_from(leaf)
        .map_err(|_| bad("cert_pem: the certificate cannot be parsed"))?;
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.0.as_bytes())
        .map_err(|_| bad("key_pem holds no usable private key"))?;
    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(chain, key, &provider)
        .map_err(|_| bad("key_pem is not a supported key, or does not fit cert_pem"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use podgate_core::model::Pem;

    fn cert(name: &str) -> Certificate {
        let made = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        Certificate {
            id: "ns/tls".to_owned(),
            cert_pem: Pem(made.cert.pem().into()),
            key_pem: Pem(made.signing_key.serialize_pem().into()),
        }
    }

    #[test]
    fn only_a_usable_certificate_passes() {
        let good = cert("a.example");
        assert!(check(&good).is_ok());
        let other = cert("b.example");
        let garbage = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n";
        for (cert_pem, key_pem) in [
            ("no pem", &*good.key_pem.0),
            (garbage, &*good.key_pem.0),
            (&*good.cert_pem.0, ""),
            (&*good.cert_pem.0, &*other.key_pem.0),
        ] {
            let c = Certificate {
                cert_pem: Pem(cert_pem.into()),
                key_pem: Pem(key_pem.into()),
                ..good.clone()
            };
            match check(&c) {
                Err(LbError::Rejected(why)) => {
                    assert!(
                        why.starts_with("certificate ns/tls: ") && !why.contains("PRIVATE"),
                        "{why}"
                    );
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
