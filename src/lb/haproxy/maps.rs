//! The map files that carry hosts and paths, and their runtime updates.
//!
//! Owns: turning a [`RouteTable`] into map entries, refusing paths that cannot be put
//! into a map safely, writing the files (read by HAProxy at start), replacing a map at
//! run time atomically (`prepare map` / `add map @ver` / `commit map @ver`), and reading
//! the maps back into a route table. Must never reload HAProxy: maps change live.
//!
//! Encoding (see the frontend rendered by `render`):
//! - `hosts.map` (`map_str`): host pattern → vhost id. Exact hosts are stored as is;
//!   `*.example.com` is stored literally and looked up with the request host whose first
//!   label was replaced by `*` — only when the exact lookup missed, so exact beats
//!   wildcard and the wildcard covers exactly one label.
//! - `paths_exact.map` (`map_str`): `<vhost id><path>` → backend.
//! - `paths_prefix.map` (`map_beg`, which HAProxy indexes as a prefix tree and answers
//!   with the *longest* matching key): `<vhost id><path>/` → backend, looked up with
//!   `<vhost id><request path>/`. Appending `/` on both sides turns string-prefix into
//!   element-wise prefix: `/foo/` is a prefix of `/foo/`, `/foo//` and `/foo/bar/` but
//!   not of `/foobar/`; the root prefix (stored as "") becomes `/`.
//! - Precedence: the exact map is consulted first. That is the Ingress rule, because an
//!   `Exact` match is as long as the whole request path, so no `Prefix` rule that also
//!   matches can be longer, and at equal length `Exact` wins.
//! - Host-less Ingress rules (`RouteTable::any_host`) are the vhost stored under the key
//!   `*` (no host pattern can be `*`), looked up when neither the exact nor the
//!   wildcard lookup found a host.
//! - `vhost_default.map`: vhost id → the Ingress `defaultBackend`; `default.map`:
//!   `default` → the catch-all; `upstreams.map`: backend → encoded upstream key, so that
//!   `observe` can name what it finds; `certificates.map`: certificate name →
//!   encoded certificate id, for the same reason (see `certs`).

use crate::lb::LbError;
use std::collections::BTreeMap;
use std::path::Path;

use super::names::{
    Names, any_host_vhost_id, decode_cert_id, decode_key, encode_cert_id, encode_key, vhost_id,
};
use super::runtime::{RuntimeClient, RuntimeError, escape_arg};
use podgate_core::model::{
    HostPattern, PathKind, PathMatch, Route, RouteTable, UpstreamKey, VirtualHost,
};

/// The `hosts.map` key of the host-less rules.
const ANY_HOST: &str = "*";

/// One of podgate's map files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum MapKind {
    Hosts,
    Exact,
    Prefix,
    VhostDefault,
    Default,
    Upstreams,
    Certificates,
}

impl MapKind {
    pub(crate) const ALL: [Self; 7] = [
        Self::Hosts,
        Self::Exact,
        Self::Prefix,
        Self::VhostDefault,
        Self::Default,
        Self::Upstreams,
        Self::Certificates,
    ];

    pub(crate) fn file_name(self) -> &'static str {
        match self {
            Self::Hosts => "hosts.map",
            Self::Exact => "paths_exact.map",
            Self::Prefix => "paths_prefix.map",
            Self::VhostDefault => "vhost_default.map",
            Self::Default => "default.map",
            Self::Upstreams => "upstreams.map",
            Self::Certificates => "certificates.map",
        }
    }
}

/// The content of every map, in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct MapSet(pub(crate) BTreeMap<MapKind, Vec<(String, String)>>);

/// A path as HAProxy sees it on the wire (raw, not decoded): printable ASCII as is,
/// other bytes (UTF-8) percent-encoded in upper case as clients send them. Whitespace
/// and control characters are refused: they would break a map line.
fn map_path(path: &str) -> Option<String> {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        match b {
            0x21..=0x7e => out.push(char::from(b)),
            0x80..=0xff => {
                let _ = write!(out, "%{b:02X}");
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Inverse of [`map_path`] for what it encodes (runs of `%XX` ≥ 0x80 forming UTF-8).
fn unmap_path(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let high = raw
            .get(i + 1..i + 3)
            .filter(|_| bytes[i] == b'%')
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .filter(|b| *b >= 0x80);
        if let Some(b) = high {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| raw.to_owned())
}

impl MapSet {
    /// Builds every map from the route table, the set of known upstreams and the ids of
    /// the certificates held.
    pub(crate) fn build<'a, 'c>(
        names: &Names,
        routes: &RouteTable,
        upstreams: impl Iterator<Item = &'a UpstreamKey>,
        certificates: impl Iterator<Item = &'c str>,
    ) -> Result<Self, LbError> {
        let mut m: BTreeMap<MapKind, Vec<(String, String)>> =
            MapKind::ALL.iter().map(|k| (*k, Vec::new())).collect();
        let mut push = |k: MapKind, key: String, value: String| {
            if let Some(v) = m.get_mut(&k) {
                v.push((key, value));
            }
        };
        let vhosts = routes
            .hosts
            .iter()
            .map(|(host, vhost)| (host.as_str(), vhost_id(host), vhost))
            .chain(
                routes
                    .any_host
                    .iter()
                    .map(|vhost| (ANY_HOST, any_host_vhost_id(), vhost)),
            );
        for (host, vh, vhost) in vhosts {
            push(MapKind::Hosts, host.to_owned(), vh.clone());
            let mut seen = std::collections::HashSet::new();
            for r in &vhost.routes {
                let Some(path) = map_path(&r.path.path) else {
                    return Err(LbError::Rejected(format!(
                        "path {:?} of host {host} contains whitespace or control characters",
                        r.path.path
                    )));
                };
                // The first rule in precedence order wins; a later duplicate is dead.
                if !seen.insert(&r.path) {
                    continue;
                }
                let be = names.backend(&r.upstream);
                match r.path.kind {
                    PathKind::Exact => push(MapKind::Exact, format!("{vh}{path}"), be),
                    PathKind::Prefix => push(MapKind::Prefix, format!("{vh}{path}/"), be),
                }
            }
            if let Some(d) = &vhost.default_backend {
                push(MapKind::VhostDefault, vh, names.backend(d));
            }
        }
        if let Some(d) = &routes.default_backend {
            push(MapKind::Default, "default".into(), names.backend(d));
        }
        for key in upstreams {
            push(MapKind::Upstreams, names.backend(key), encode_key(key));
        }
        for id in certificates {
            push(MapKind::Certificates, names.cert(id), encode_cert_id(id));
        }
        Ok(Self(m))
    }

    pub(crate) fn get(&self, kind: MapKind) -> &[(String, String)] {
        self.0.get(&kind).map_or(&[], Vec::as_slice)
    }

    /// Certificate name → id, from `certificates.map`.
    pub(crate) fn certificate_ids(&self) -> BTreeMap<String, String> {
        self.get(MapKind::Certificates)
            .iter()
            .filter_map(|(name, enc)| Some((name.clone(), decode_cert_id(enc)?)))
            .collect()
    }

    /// Writes every map file atomically (temp file + rename) into `dir`.
    pub(crate) fn write_files(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        for kind in MapKind::ALL {
            let mut body = String::new();
            for (k, v) in self.get(kind) {
                body.push_str(k);
                body.push(' ');
                body.push_str(v);
                body.push('\n');
            }
            write_atomic(&dir.join(kind.file_name()), body.as_bytes())?;
        }
        Ok(())
    }

    /// Reads the maps back into a route table (only entries that resolve).
    pub(crate) fn to_routes(&self) -> RouteTable {
        let upstreams: BTreeMap<&str, UpstreamKey> = self
            .get(MapKind::Upstreams)
            .iter()
            .filter_map(|(be, enc)| Some((be.as_str(), decode_key(enc)?)))
            .collect();
        // `None`: the host-less rules.
        let mut vhosts: BTreeMap<String, (Option<HostPattern>, VirtualHost)> = BTreeMap::new();
        for (host, vh) in self.get(MapKind::Hosts) {
            if host == ANY_HOST {
                vhosts.insert(vh.clone(), (None, VirtualHost::default()));
            } else if let Ok(h) = HostPattern::parse(host) {
                vhosts.insert(vh.clone(), (Some(h), VirtualHost::default()));
            }
        }
        let mut add = |key: &str, be: &str, kind: PathKind| {
            let (Some(vh), Some(up)) = (key.get(..21), upstreams.get(be)) else {
                return;
            };
            let raw = &key[21..];
            let path = unmap_path(match kind {
                PathKind::Exact => raw,
                PathKind::Prefix => raw.strip_suffix('/').unwrap_or(raw),
            });
            if let Some((_, v)) = vhosts.get_mut(vh) {
                v.routes.push(Route {
                    path: PathMatch {
                        kind,
                        path: path.into(),
                    },
                    upstream: up.clone(),
                });
            }
        };
        for (k, be) in self.get(MapKind::Exact) {
            add(k, be, PathKind::Exact);
        }
        for (k, be) in self.get(MapKind::Prefix) {
            add(k, be, PathKind::Prefix);
        }
        for (vh, be) in self.get(MapKind::VhostDefault) {
            if let (Some((_, v)), Some(up)) = (vhosts.get_mut(vh), upstreams.get(be.as_str())) {
                v.default_backend = Some(up.clone());
            }
        }
        let mut table = RouteTable {
            any_host: None,
            hosts: BTreeMap::new(),
            default_backend: self
                .get(MapKind::Default)
                .iter()
                .find_map(|(_, be)| upstreams.get(be.as_str()).cloned()),
        };
        for (_, (host, mut v)) in vhosts {
            v.routes.sort_by(|a, b| a.path.cmp(&b.path));
            match host {
                Some(host) => {
                    table.hosts.insert(host, v);
                }
                None => table.any_host = Some(v),
            }
        }
        table
    }
}

pub(crate) fn write_atomic(path: &Path, body: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, body)?;
    std::fs::rename(&tmp, path)
}

/// Reads one map through `show map`; `None` when the running worker does not know the
/// map (it was started without podgate's file).
pub(crate) async fn read_map(
    rt: &RuntimeClient,
    file: &Path,
) -> Result<Option<Vec<(String, String)>>, RuntimeError> {
    let cmd = format!("show map {}", escape_arg(&file.to_string_lossy()));
    let answer = rt.raw(&cmd).await?;
    if answer.starts_with("Unknown map") {
        return Ok(None);
    }
    Ok(Some(
        answer
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                let _ref = it.next()?;
                Some((it.next()?.to_owned(), it.next()?.to_owned()))
            })
            .collect(),
    ))
}

const PAYLOAD_BUDGET: usize = 8 * 1024;

/// Replaces a map's whole content at run time, atomically for traffic.
pub(crate) async fn replace_map(
    rt: &RuntimeClient,
    file: &Path,
    entries: &[(String, String)],
) -> Result<(), RuntimeError> {
    let f = escape_arg(&file.to_string_lossy());
    let answer = rt
        .run(&format!("prepare map {f}"), &["New version"])
        .await?;
    let version: u64 = answer
        .trim()
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| RuntimeError::Command {
            command: format!("prepare map {f}"),
            answer: answer.trim().to_owned(),
        })?;
    // A command and its payload must fit in one HAProxy buffer (`tune.bufsize`,
    // 16 kB by default): send chunks of at most ~8 kB, all into the same version.
    let head = format!("add map @{version} {f} <<\n");
    let mut cmd = head.clone();
    for (k, v) in entries {
        if cmd.len() + k.len() + v.len() + 3 > PAYLOAD_BUDGET && cmd.len() > head.len() {
            cmd.push('\n');
            rt.run(&cmd, &[]).await?;
            cmd.clone_from(&head);
        }
        cmd.push_str(k);
        cmd.push(' ');
        cmd.push_str(v);
        cmd.push('\n');
    }
    if cmd.len() > head.len() {
        cmd.push('\n');
        rt.run(&cmd, &[]).await?;
    }
    rt.run(&format!("commit map @{version} {f}"), &[]).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use podgate_core::model::PortRef;

    fn key(s: &str) -> UpstreamKey {
        UpstreamKey::new("ns", s, PortRef::Number(80))
    }

    fn table() -> RouteTable {
        let mut routes = vec![
            Route {
                path: PathMatch::prefix("/"),
                upstream: key("root"),
            },
            Route {
                path: PathMatch::prefix("/a;b"),
                upstream: key("semi"),
            },
            Route {
                path: PathMatch::exact("/foo"),
                upstream: key("exact"),
            },
            Route {
                path: PathMatch::exact("/q'u\"o\\te/ä"),
                upstream: key("exact"),
            },
        ];
        routes.sort_by(|a, b| a.path.cmp(&b.path));
        let mut hosts = BTreeMap::new();
        hosts.insert(
            HostPattern::parse("*.example.com").unwrap(),
            VirtualHost {
                routes,
                default_backend: Some(key("vdef")),
                tls: None,
                rules: Vec::new(),
            },
        );
        RouteTable {
            any_host: None,
            hosts,
            default_backend: Some(key("root")),
        }
    }

    #[test]
    fn route_tables_round_trip_through_the_maps() {
        let t = table();
        let keys = ["root", "semi", "exact", "vdef"].map(key);
        let maps = MapSet::build(&Names::new(None), &t, keys.iter(), std::iter::empty()).unwrap();
        let vh = vhost_id(&HostPattern::parse("*.example.com").unwrap());
        assert!(
            maps.get(MapKind::Prefix)
                .iter()
                .any(|(k, _)| *k == format!("{vh}/"))
        );
        assert!(
            maps.get(MapKind::Prefix)
                .iter()
                .any(|(k, _)| *k == format!("{vh}/a;b/"))
        );
        assert!(
            maps.get(MapKind::Exact)
                .iter()
                .any(|(k, _)| *k == format!("{vh}/foo"))
        );
        assert_eq!(maps.to_routes(), t);
    }

    #[test]
    fn host_less_rules_round_trip_under_the_star_key() {
        let mut t = table();
        t.any_host = Some(VirtualHost {
            routes: vec![Route {
                path: PathMatch::prefix("/any"),
                upstream: key("semi"),
            }],
            default_backend: None,
            tls: None,
            rules: Vec::new(),
        });
        assert!(
            HostPattern::parse(ANY_HOST).is_err(),
            "no host can take the key"
        );
        let keys = ["root", "semi", "exact", "vdef"].map(key);
        let maps = MapSet::build(&Names::new(None), &t, keys.iter(), std::iter::empty()).unwrap();
        let any = any_host_vhost_id();
        assert!(
            maps.get(MapKind::Hosts)
                .contains(&(ANY_HOST.into(), any.clone()))
        );
        assert!(
            maps.get(MapKind::Prefix)
                .iter()
                .any(|(k, _)| *k == format!("{any}/any/"))
        );
        assert_eq!(maps.to_routes(), t);
    }

    #[test]
    fn unsafe_paths_are_refused() {
        let mut t = table();
        if let Some(v) = t.hosts.values_mut().next() {
            v.routes[0].path.path = "/a b\nbackend x".into();
        }
        assert!(
            MapSet::build(
                &Names::new(None),
                &t,
                std::iter::empty(),
                std::iter::empty()
            )
            .is_err()
        );
    }
}
