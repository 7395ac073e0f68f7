//! Names podgate gives to HAProxy objects, and the reverse direction for `observe`.
//!
//! Owns: backend names (owner tag and hashed upstream keys), certificate names (owner
//! tag and hashed certificate ids), virtual-host ids (hashed host patterns),
//! server names (cluster + address + port), the reversible encoding of an upstream key
//! stored in `upstreams.map`, and the weight scale. Must never let a user-controlled
//! string reach HAProxy unescaped: every name built here is drawn from `[a-z0-9_.:-]`.

use std::net::IpAddr;

use ring::digest::{SHA256, digest};

use crate::lb::owner::owner_tag;
use podgate_core::model::{ClusterName, Endpoint, HostPattern, PortRef, UpstreamKey};

/// Every server podgate adds starts with this; other servers are invisible to podgate.
pub(crate) const SERVER_PREFIX: &str = "pg-";

/// HAProxy's largest server weight.
pub(crate) const MAX_WEIGHT: u32 = 256;

pub(crate) fn short_hash(input: &[u8]) -> String {
    use std::fmt::Write as _;
    let d = digest(&SHA256, input);
    // 80 bits: collisions among even a million upstreams are vanishingly unlikely, and
    // SHA-256 cannot be steered by someone who picks Service names.
    d.as_ref()[..10].iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// 20 hex digits naming an upstream key: stable across restarts, safe in any name.
pub(crate) fn key_hash(key: &UpstreamKey) -> String {
    short_hash(encode_key(key).as_bytes())
}

/// The names of one owner's HAProxy objects (see [`owner_tag`]). The anonymous owner
/// keeps `pg_be_<hash>`, `podgate_404` and `podgate_http`; owner `o1a2…` gets
/// `pg_o1a2…_be_<hash>`, `pg_o1a2…_404` and `pg_o1a2…_http`. Every backend an adapter
/// creates, re-syncs or empties starts with its own [`Names::is_backend`] prefix, so two
/// controllers sharing one HAProxy never touch each other's backends or servers.
#[derive(Clone, Debug)]
pub(crate) struct Names {
    backend_prefix: String,
    pub(crate) not_found: String,
    pub(crate) frontend: String,
    cert_prefix: String,
}

impl Names {
    pub(crate) fn new(owner: Option<&str>) -> Self {
        match owner_tag(owner) {
            None => Self {
                backend_prefix: "pg_be_".into(),
                not_found: "podgate_404".into(),
                frontend: "podgate_http".into(),
                cert_prefix: "pg_crt_".into(),
            },
            Some(tag) => Self {
                backend_prefix: format!("pg_{tag}_be_"),
                not_found: format!("pg_{tag}_404"),
                frontend: format!("pg_{tag}_http"),
                cert_prefix: format!("pg_{tag}_crt_"),
            },
        }
    }

    /// The backend of an upstream.
    pub(crate) fn backend(&self, key: &UpstreamKey) -> String {
        format!("{}{}", self.backend_prefix, key_hash(key))
    }

    /// Whether this owner created the backend `name`.
    pub(crate) fn is_backend(&self, name: &str) -> bool {
        name.starts_with(&self.backend_prefix)
    }

    /// The name of a certificate (`namespace/secret`): `pg_crt_<hash>`, with the owner's
    /// tag like backends. The file HAProxy knows it by is `<config_dir>/certs/<name>.pem`.
    pub(crate) fn cert(&self, id: &str) -> String {
        format!("{}{}", self.cert_prefix, short_hash(id.as_bytes()))
    }

    /// Whether this owner created the certificate `name` (a file stem).
    pub(crate) fn is_cert(&self, name: &str) -> bool {
        name.strip_prefix(&self.cert_prefix)
            .is_some_and(|h| h.len() == 20 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    }
}

/// A certificate id (`namespace/secret`) percent-encoded: safe as a map value.
pub(crate) fn encode_cert_id(id: &str) -> String {
    pct(id)
}

pub(crate) fn decode_cert_id(raw: &str) -> Option<String> {
    unpct(raw)
}

/// `v<20 hex>`: the id of a virtual host in the path maps. Fixed length, so one host's
/// keys can never be a prefix of another host's keys.
pub(crate) fn vhost_id(host: &HostPattern) -> String {
    format!("v{}", short_hash(host.as_str().as_bytes()))
}

/// The vhost id of the host-less rules (`RouteTable::any_host`), stored under the key
/// `*` in `hosts.map`. `*` is no host pattern, so no host's id can be the same.
pub(crate) fn any_host_vhost_id() -> String {
    format!("v{}", short_hash(b"*"))
}

/// A cluster name as it appears inside a server name: itself when it is a short DNS
/// label, otherwise `_` and a hash (`_` cannot occur in the plain form).
pub(crate) fn cluster_token(cluster: &ClusterName) -> String {
    let c = cluster.as_str();
    let plain = !c.is_empty()
        && c.len() <= 32
        && c.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !c.starts_with('-');
    if plain {
        c.to_owned()
    } else {
        format!("_{}", short_hash(c.as_bytes()))
    }
}

/// `pg-<cluster>-<address>-<port>`.
pub(crate) fn server_name(e: &Endpoint) -> String {
    format!(
        "{SERVER_PREFIX}{}-{}-{}",
        cluster_token(&e.cluster),
        e.address,
        e.port
    )
}

/// The parts of a server name podgate created: (cluster token, address, port).
pub(crate) fn parse_server_name(name: &str) -> Option<(&str, IpAddr, u16)> {
    let rest = name.strip_prefix(SERVER_PREFIX)?;
    let (rest, port) = rest.rsplit_once('-')?;
    let (cluster, addr) = rest.rsplit_once('-')?;
    Some((cluster, addr.parse().ok()?, port.parse().ok()?))
}

/// An address as HAProxy's `server` and `add server` accept it.
pub(crate) fn haproxy_addr(address: IpAddr, port: u16) -> String {
    match address {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("ipv6@{a}:{port}"),
    }
}

fn pct(raw: &str) -> String {
    use std::fmt::Write as _;
    raw.bytes().fold(String::new(), |mut s, b| {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_' {
            s.push(char::from(b));
        } else {
            let _ = write!(s, "%{b:02X}");
        }
        s
    })
}

fn unpct(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = raw.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `ns/svc/n80` or `ns/svc/shttp`, each part percent-encoded: safe as a map value.
pub(crate) fn encode_key(key: &UpstreamKey) -> String {
    let port = match &key.port {
        PortRef::Number(n) => format!("n{n}"),
        PortRef::Name(n) => format!("s{}", pct(n)),
    };
    format!("{}/{}/{port}", pct(&key.namespace), pct(&key.service))
}

pub(crate) fn decode_key(raw: &str) -> Option<UpstreamKey> {
    let mut parts = raw.split('/');
    let ns = unpct(parts.next()?)?;
    let svc = unpct(parts.next()?)?;
    let port = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    let port = if let Some(n) = port.strip_prefix('n') {
        PortRef::Number(n.parse().ok()?)
    } else {
        PortRef::Name(unpct(port.strip_prefix('s')?)?.into())
    };
    Some(UpstreamKey::new(&ns, &svc, port))
}

/// Maps an upstream's podgate weights onto HAProxy's 0–256: unchanged when they all fit,
/// else scaled so the largest becomes 256, keeping every non-zero weight at least 1.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WeightScale {
    max: u32,
}

impl WeightScale {
    pub(crate) fn for_weights(weights: impl Iterator<Item = u32>) -> Self {
        Self {
            max: weights.max().unwrap_or(0),
        }
    }

    pub(crate) fn to_haproxy(self, w: u32) -> u32 {
        if self.max <= MAX_WEIGHT || w == 0 {
            return w.min(MAX_WEIGHT);
        }
        let scaled =
            (u64::from(w) * u64::from(MAX_WEIGHT) + u64::from(self.max) / 2) / u64::from(self.max);
        u32::try_from(scaled)
            .unwrap_or(MAX_WEIGHT)
            .clamp(1, MAX_WEIGHT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podgate_core::model::EndpointState;

    #[test]
    fn keys_round_trip_through_the_map_encoding() {
        for key in [
            UpstreamKey::new("default", "web", PortRef::Number(80)),
            UpstreamKey::new("a b", "c/d%", PortRef::Name("http web".into())),
        ] {
            let enc = encode_key(&key);
            assert!(
                enc.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._%/".contains(&b))
            );
            assert_eq!(decode_key(&enc), Some(key));
        }
        assert_eq!(decode_key("a/b"), None);
        assert_eq!(decode_key("a/b/x1"), None);
    }

    #[test]
    fn server_names_round_trip() {
        for (cluster, addr) in [("idc", "10.0.0.1"), ("Bad Name!", "fd00::1")] {
            let e = Endpoint {
                cluster: ClusterName::new(cluster),
                address: addr.parse().unwrap(),
                port: 8080,
                zone: None,
                node: None,
                state: EndpointState::Active,
                weight: 1,
            };
            let name = server_name(&e);
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b))
            );
            let (c, a, p) = parse_server_name(&name).unwrap();
            assert_eq!(c, cluster_token(&e.cluster));
            assert_eq!((a, p), (e.address, 8080));
        }
    }

    #[test]
    fn owners_never_share_a_backend_prefix() {
        let key = UpstreamKey::new("default", "web", PortRef::Number(80));
        let (anon, a, b) = (
            Names::new(None),
            Names::new(Some("a")),
            Names::new(Some("b")),
        );
        assert_eq!(anon.backend(&key), format!("pg_be_{}", key_hash(&key)));
        for (x, y) in [(&anon, &a), (&a, &anon), (&a, &b), (&b, &a)] {
            assert!(!x.is_backend(&y.backend(&key)));
            assert!(!x.is_backend(&y.not_found) && x.not_found != y.not_found);
            assert_ne!(x.frontend, y.frontend);
        }
        assert!(a.is_backend(&a.backend(&key)) && !a.is_backend(&a.not_found));
        for (x, y) in [(&anon, &a), (&a, &anon), (&a, &b)] {
            assert!(!x.is_cert(&y.cert("ns/tls")) && x.is_cert(&x.cert("ns/tls")));
            assert!(!x.is_cert(&x.backend(&key)));
        }
        let name = a.cert("ns/it's; a\nbackend x");
        assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        let enc = encode_cert_id("ns/it's; a b");
        assert!(
            enc.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._%".contains(&b))
        );
        assert_eq!(decode_cert_id(&enc).as_deref(), Some("ns/it's; a b"));
    }

    #[test]
    fn weights_scale_into_haproxy_range() {
        let s = WeightScale::for_weights([10, 20, 0].into_iter());
        assert_eq!((s.to_haproxy(10), s.to_haproxy(0)), (10, 0));
        let s = WeightScale::for_weights([1000, 500, 1].into_iter());
        assert_eq!(s.to_haproxy(1000), 256);
        assert_eq!(s.to_haproxy(500), 128);
        assert_eq!(s.to_haproxy(1), 1);
    }
}
