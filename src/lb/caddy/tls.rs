//! TLS in Caddy: podgate's certificates in the TLS app, and the TLS server that serves
//! podgate's routes with them.
//!
//! Owns: the `apps.tls.certificates.load_pem` entries podgate adds (`@id` and tag
//! `podgate-cert-<hash of the id>`, owner-tagged like every podgate id, plus a tag
//! carrying the percent-encoded id so that `observe` can name them), and the TLS server
//! `<server_name>-tls` (`@id` `podgate-tls-server`): the plain server's routes without
//! their `@id`s, on `tls_listen`, with one connection policy per host whose route
//! names a held certificate (`match.sni` → `certificate_selection.any_tag`, exact hosts
//! before wildcards, since the first matching policy wins). A policy for
//! `podgate.invalid` is always there, so the listener stays TLS (refusing every other
//! name at the handshake) even when no host has TLS: without any policy Caddy would
//! serve plain HTTP on it.
//!
//! Must never turn on automatic HTTPS (both servers disable it: no ACME, no
//! Let's Encrypt, no outbound request), touch another entry of `load_pem`, or put a
//! certificate id where Caddy interprets it (ids travel hashed, or as a tag: data).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde_json::{Value, json};

use crate::lb::haproxy::names::{decode_cert_id, encode_cert_id};
use crate::lb::owner::owner_tag;
use podgate_core::model::{Certificate, CertificateInfo, HostPattern, RouteTable};

/// The SNI name of the policy that only keeps the TLS listener TLS: `.invalid` is
/// reserved (RFC 2606), no client asks for it.
const NO_NAME: &str = "podgate.invalid";

/// The `@id`s and tags of one owner's TLS objects.
#[derive(Clone, Debug)]
pub(crate) struct TlsIds {
    pub(crate) server: String,
    cert_prefix: String,
    id_tag_prefix: String,
}

impl TlsIds {
    pub(crate) fn new(owner: Option<&str>) -> Self {
        let base =
            owner_tag(owner).map_or_else(|| "podgate-".to_owned(), |t| format!("podgate-{t}-"));
        Self {
            server: format!("{base}tls-server"),
            cert_prefix: format!("{base}cert-"),
            id_tag_prefix: format!("{base}id-"),
        }
    }

    /// The `@id` (and selection tag) of a certificate.
    pub(crate) fn cert(&self, id: &str) -> String {
        format!(
            "{}{}",
            self.cert_prefix,
            crate::lb::haproxy::names::short_hash(id.as_bytes())
        )
    }

    pub(crate) fn is_cert(&self, at_id: &str) -> bool {
        at_id.starts_with(&self.cert_prefix)
    }
}

/// The key of the TLS server under `apps.http.servers`.
pub(crate) fn tls_server_name(server_name: &str) -> String {
    format!("{server_name}-tls")
}

/// One `load_pem` entry.
pub(crate) fn cert_entry(ids: &TlsIds, cert: &Certificate) -> Value {
    let tag = ids.cert(&cert.id);
    json!({
        "@id": tag,
        "certificate": &*cert.cert_pem.0,
        "key": &*cert.key_pem.0,
        "tags": [tag, format!("{}{}", ids.id_tag_prefix, encode_cert_id(&cert.id))],
    })
}

/// The certificate id an entry of this owner carries.
pub(crate) fn entry_id(ids: &TlsIds, entry: &Value) -> Option<String> {
    entry["tags"]
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .find_map(|t| t.strip_prefix(&ids.id_tag_prefix))
        .and_then(decode_cert_id)
}

/// What `observe` reports of an entry: its id and the DNS names of its leaf.
pub(crate) fn entry_info(ids: &TlsIds, entry: &Value) -> Option<CertificateInfo> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let id = entry_id(ids, entry)?;
    let pem = entry["certificate"].as_str().unwrap_or_default();
    let names = CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .and_then(Result::ok)
        .and_then(|der| {
            let leaf = webpki::EndEntityCert::try_from(&der).ok()?;
            Some(
                leaf.valid_dns_names()
                    .map(str::to_ascii_lowercase)
                    .collect::<Vec<_>>(),
            )
        })
        .unwrap_or_default();
    Some(CertificateInfo { id, names })
}

/// The connection policies: one per host whose route names a held certificate, exact
/// hosts first, then the never-matching one.
fn policies(
    ids: &TlsIds,
    routes: &RouteTable,
    certs: &BTreeMap<String, Certificate>,
) -> Vec<Value> {
    let mut hosts: Vec<(&HostPattern, &str)> = routes
        .hosts
        .iter()
        .filter_map(|(h, v)| Some((h, v.tls.as_deref().filter(|id| certs.contains_key(*id))?)))
        .collect();
    hosts.sort_by_key(|(h, _)| h.wildcard_suffix().is_some());
    let policy = |sni: &str, tag: String| json!({ "match": { "sni": [sni] }, "certificate_selection": { "any_tag": [tag] } });
    hosts
        .into_iter()
        .map(|(h, id)| policy(h.as_str(), ids.cert(id)))
        .chain([policy(NO_NAME, format!("{}none", ids.cert_prefix))])
        .collect()
}

/// Removes every `@id` inside `v`: Caddy's ids are global, and the TLS server's routes
/// are a copy of the plain server's.
fn strip_ids(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.remove("@id");
            map.values_mut().for_each(strip_ids);
        }
        Value::Array(list) => list.iter_mut().for_each(strip_ids),
        _ => {}
    }
}

/// The TLS server for the rendered plain server `plain`.
pub(crate) fn render_tls_server(
    ids: &TlsIds,
    listen: &[SocketAddr],
    plain: &Value,
    routes: &RouteTable,
    certs: &BTreeMap<String, Certificate>,
) -> Value {
    let mut copy = plain["routes"].clone();
    strip_ids(&mut copy);
    json!({
        "@id": ids.server,
        "listen": listen.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "automatic_https": { "disable": true },
        "protocols": ["h1", "h2"],
        "tls_connection_policies": policies(ids, routes, certs),
        "routes": copy,
    })
}

/// The certificate id each host of a live TLS server is served with, through the live
/// entries (`tag → id`).
pub(crate) fn read_policies(
    server: &Value,
    ids_by_tag: &BTreeMap<String, String>,
    routes: &mut RouteTable,
) {
    for p in server["tls_connection_policies"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let (Some(sni), Some(tag)) = (
            p["match"]["sni"][0].as_str(),
            p["certificate_selection"]["any_tag"][0].as_str(),
        ) else {
            continue;
        };
        let vhost = HostPattern::parse(sni)
            .ok()
            .and_then(|h| routes.hosts.get_mut(&h));
        if let (Some(v), Some(id)) = (vhost, ids_by_tag.get(tag)) {
            v.tls = Some(id.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podgate_core::model::{Pem, VirtualHost};

    fn cert(id: &str) -> Certificate {
        let made = rcgen::generate_simple_self_signed(vec!["a.example".to_owned()]).unwrap();
        Certificate {
            id: id.to_owned(),
            cert_pem: Pem(made.cert.pem().into()),
            key_pem: Pem(made.signing_key.serialize_pem().into()),
        }
    }

    #[test]
    fn entries_name_their_certificate_and_owners_stay_apart() {
        let (anon, a) = (TlsIds::new(None), TlsIds::new(Some("a")));
        let c = cert("ns/it's a \"secret\"");
        let e = cert_entry(&a, &c);
        assert!(a.is_cert(e["@id"].as_str().unwrap()));
        assert!(!anon.is_cert(e["@id"].as_str().unwrap()));
        assert_eq!(entry_id(&a, &e).as_deref(), Some(c.id.as_str()));
        assert_eq!(entry_id(&anon, &e), None);
        let info = entry_info(&a, &e).unwrap();
        assert_eq!(info.names, vec!["a.example"]);
        assert_ne!(anon.server, a.server);
    }

    #[test]
    fn policies_pick_certificates_by_sni_exact_hosts_first() {
        let ids = TlsIds::new(None);
        let certs: BTreeMap<String, Certificate> = [cert("ns/w"), cert("ns/a")]
            .into_iter()
            .map(|c| (c.id.clone(), c))
            .collect();
        let mut routes = RouteTable::default();
        for (host, tls) in [
            ("*.example", Some("ns/w")),
            ("a.example", Some("ns/a")),
            ("b.example", Some("ns/gone")),
            ("c.example", None),
        ] {
            routes.hosts.insert(
                HostPattern::parse(host).unwrap(),
                VirtualHost {
                    tls: tls.map(str::to_owned),
                    ..VirtualHost::default()
                },
            );
        }
        let plain =
            json!({ "@id": "podgate-server", "routes": [{ "@id": "podgate-meta", "handle": [] }] });
        let server = render_tls_server(&ids, &[], &plain, &routes, &certs);
        let sni: Vec<&str> = server["tls_connection_policies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["match"]["sni"][0].as_str().unwrap())
            .collect();
        assert_eq!(sni, ["a.example", "*.example", NO_NAME]);
        assert_eq!(
            server["routes"],
            json!([{ "handle": [] }]),
            "ids are stripped"
        );
        assert_eq!(server["automatic_https"]["disable"], true);

        let tags: BTreeMap<String, String> =
            certs.keys().map(|id| (ids.cert(id), id.clone())).collect();
        let mut read = routes.clone();
        for v in read.hosts.values_mut() {
            v.tls = None;
        }
        read_policies(&server, &tags, &mut read);
        routes
            .hosts
            .get_mut(&HostPattern::parse("b.example").unwrap())
            .unwrap()
            .tls = None;
        assert_eq!(read, routes);
    }
}
