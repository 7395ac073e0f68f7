//! [`CaddyAdapter`]: the LB contract on top of Caddy's admin API.
//!
//! Owns: the mirror of what was applied, posting the rendered server once per batch
//! (and the TLS server beside it with `tls_listen`), podgate's certificates in the TLS
//! app (loaded before the servers name them, removed after), creating the paths down
//! to `apps.http.servers` and `apps.tls.certificates.load_pem` when Caddy has none, and
//! `observe`.
//! Must never `POST /load` (that would replace the operator's whole configuration).

use crate::lb::SettingsError;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};

use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::CaddySettings;
use super::client::{AdminClient, AdminError};
use super::render::{
    Ids, Meta, SOURCE_VAR, SOURCE_VHOST_DEFAULT, UP_VAR, dial, parse_pattern, render_server, slots,
};
use super::tls::{
    TlsIds, cert_entry, entry_id, entry_info, read_policies, render_tls_server, tls_server_name,
};
use crate::lb::haproxy::names::decode_key;
use crate::lb::{BoxFuture, LbAdapter, LbError, next_upstreams};
use podgate_core::model::{
    Batch, Certificate, CertificateInfo, ClusterName, Endpoint, EndpointState, HostPattern,
    LbState, Route, RouteTable, StateSummary, Upstream, UpstreamKey, VirtualHost,
};

#[derive(Default)]
struct Mirror {
    upstreams: BTreeMap<UpstreamKey, Upstream>,
    routes: RouteTable,
    certs: BTreeMap<String, Certificate>,
    generation: u64,
    epoch: u64,
    /// Whether this adapter has applied anything yet (a fresh adapter must compare
    /// with Caddy before deciding that nothing changed).
    applied: bool,
}

/// One Caddy instance.
pub struct CaddyAdapter {
    name: String,
    settings: CaddySettings,
    ids: Ids,
    tls_ids: TlsIds,
    client: AdminClient,
    mirror: Mutex<Mirror>,
}

#[allow(clippy::needless_pass_by_value)] // used as `map_err(lb_error)`
fn lb_error(e: AdminError) -> LbError {
    if e.is_refusal() {
        LbError::Rejected(e.to_string())
    } else {
        LbError::Transient(e.to_string())
    }
}

/// A certificate Caddy refused is that certificate's fault (with its id); trouble
/// reaching Caddy is not.
#[allow(clippy::needless_pass_by_value)]
fn cert_error(id: &str, e: AdminError) -> LbError {
    if e.is_refusal() {
        LbError::Rejected(format!("certificate {id}: {e}"))
    } else {
        LbError::Transient(e.to_string())
    }
}

/// The certificates held after `batch`: removals, then upserts (each checked first, so
/// that Caddy never sees one it would refuse).
fn next_certificates(
    held: &BTreeMap<String, Certificate>,
    batch: &Batch,
) -> Result<BTreeMap<String, Certificate>, LbError> {
    let mut certs = held.clone();
    for id in &batch.remove_certificates {
        certs.remove(id);
    }
    for c in &batch.upsert_certificates {
        crate::lb::tls_check::check(c)?;
        certs.insert(c.id.clone(), c.clone());
    }
    Ok(certs)
}

fn random_token() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("caddy-{:016x}", h.finish())
}

impl CaddyAdapter {
    pub fn new(name: String, settings: CaddySettings) -> Result<Self, SettingsError> {
        let ok = !settings.server_name.is_empty()
            && settings
                .server_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !ok {
            return Err(SettingsError::ServerName(settings.server_name.clone()));
        }
        let client = AdminClient::new(settings.admin.clone(), settings.timeout);
        Ok(Self {
            name,
            ids: Ids::new(settings.owner.as_deref()),
            tls_ids: TlsIds::new(settings.owner.as_deref()),
            settings,
            client,
            mirror: Mutex::new(Mirror::default()),
        })
    }

    pub fn settings(&self) -> &CaddySettings {
        &self.settings
    }

    /// podgate's server as Caddy holds it; `None` when Caddy has none.
    async fn live_server(&self) -> Result<Option<Value>, LbError> {
        match self
            .client
            .request("GET", &format!("/id/{}", self.ids.server), None)
            .await
        {
            Ok(body) => Ok(serde_json::from_slice(&body).ok()),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(lb_error(e)),
        }
    }

    /// Only the meta route (small, unlike the whole server at thousands of upstreams).
    async fn live_meta(&self) -> Result<Option<Meta>, LbError> {
        match self
            .client
            .request("GET", &format!("/id/{}", self.ids.meta), None)
            .await
        {
            Ok(body) => Ok(serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|r| meta_of_route(&r))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(lb_error(e)),
        }
    }

    /// Puts the server under `apps.http.servers.<name>`, creating missing parents.
    async fn post_server(&self, name: &str, server: Value) -> Result<(), AdminError> {
        self.post_creating(&["apps", "http", "servers", name], server, false)
            .await
    }

    /// Posts `value` to the path `levels` (appends the items of the array `value` with
    /// `append`), creating the missing parents when Caddy has none. A TLS app podgate
    /// creates has OCSP stapling off: stapling would fetch from the CA.
    async fn post_creating(
        &self,
        levels: &[&str],
        value: Value,
        append: bool,
    ) -> Result<(), AdminError> {
        let full = format!("/config/{}", levels.join("/"));
        let target = if append { format!("{full}/...") } else { full };
        let body = serde_json::to_vec(&value).unwrap_or_default();
        match self.client.request("POST", &target, Some(body)).await {
            Ok(_) => return Ok(()),
            Err(e) if !e.is_missing_path() => return Err(e),
            Err(_) => {}
        }
        let mut tree = value.clone();
        for key in levels.iter().rev() {
            tree = json!({ *key: tree });
        }
        if levels.get(..2) == Some(&["apps", "tls"][..]) {
            tree["apps"]["tls"]["disable_ocsp_stapling"] = json!(true);
        }
        // Find the deepest existing parent and put the missing rest as one object.
        for depth in (0..levels.len()).rev() {
            let parent = format!("/config/{}", levels[..depth].join("/"));
            let existing: Value = match self.client.request("GET", &parent, None).await {
                Ok(b) => serde_json::from_slice(&b).unwrap_or(Value::Null),
                Err(e) if e.is_missing_path() => Value::Null,
                Err(e) => return Err(e),
            };
            if existing.is_object() || depth == 0 {
                let (path, sub) = if existing.is_object() {
                    let sub = levels[..=depth].iter().fold(&tree, |t, k| &t[*k]);
                    (
                        format!("/config/{}", levels[..=depth].join("/")),
                        sub.clone(),
                    )
                } else {
                    ("/config/".to_owned(), tree.clone())
                };
                // PUT creates and never replaces: another controller sharing this Caddy
                // may have created the same parent since the GET, and a POST would wipe
                // what it put there. Losing that race leaves the parent there: post again.
                let body = serde_json::to_vec(&sub).unwrap_or_default();
                if self.client.request("PUT", &path, Some(body)).await.is_ok() {
                    return Ok(());
                }
                let body = serde_json::to_vec(&value).unwrap_or_default();
                return self
                    .client
                    .request("POST", &target, Some(body))
                    .await
                    .map(|_| ());
            }
        }
        Ok(())
    }

    /// The object with this `@id`, `None` when Caddy has none.
    async fn get_id(&self, id: &str) -> Result<Option<Value>, LbError> {
        match self.client.request("GET", &format!("/id/{id}"), None).await {
            Ok(body) => Ok(serde_json::from_slice(&body).ok()),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(lb_error(e)),
        }
    }

    /// This owner's `load_pem` entries, by `@id`.
    async fn live_certs(&self) -> Result<BTreeMap<String, Value>, LbError> {
        let list = match self
            .client
            .request("GET", "/config/apps/tls/certificates/load_pem", None)
            .await
        {
            Ok(body) => serde_json::from_slice(&body).unwrap_or(Value::Null),
            Err(e) if e.is_missing_path() => Value::Null,
            Err(e) => return Err(lb_error(e)),
        };
        Ok(list
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| {
                let id = e["@id"].as_str().filter(|id| self.tls_ids.is_cert(id))?;
                Some((id.to_owned(), e.clone()))
            })
            .collect())
    }

    /// Loads new certificates (one append) and replaces changed ones (one `PATCH` each,
    /// so no host is without its certificate in between) before any route names them.
    async fn load_certs(
        &self,
        certs: &BTreeMap<String, Certificate>,
        live: &BTreeMap<String, Value>,
    ) -> Result<(), LbError> {
        let mut new = Vec::new();
        for c in certs.values() {
            let entry = cert_entry(&self.tls_ids, c);
            let at = self.tls_ids.cert(&c.id);
            match live.get(&at) {
                Some(have) if *have == entry => {}
                Some(_) => {
                    let body = serde_json::to_vec(&entry).unwrap_or_default();
                    self.client
                        .request("PATCH", &format!("/id/{at}"), Some(body))
                        .await
                        .map_err(|e| cert_error(&c.id, e))?;
                }
                None => new.push(entry),
            }
        }
        if !new.is_empty() {
            self.post_creating(
                &["apps", "tls", "certificates", "load_pem"],
                Value::Array(new),
                true,
            )
            .await
            .map_err(lb_error)?;
        }
        Ok(())
    }

    /// Removes this owner's entries that are no longer wanted, once no route names them.
    async fn drop_certs(
        &self,
        certs: &BTreeMap<String, Certificate>,
        live: &BTreeMap<String, Value>,
    ) -> Result<(), LbError> {
        for at in live.keys() {
            let wanted = certs.keys().any(|id| self.tls_ids.cert(id) == *at);
            if !wanted {
                match self
                    .client
                    .request("DELETE", &format!("/id/{at}"), None)
                    .await
                {
                    Err(e) if !e.is_not_found() => return Err(lb_error(e)),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// The TLS server as it should be for the plain server `plain`; `None` without
    /// `tls_listen`.
    fn tls_server(
        &self,
        plain: &Value,
        routes: &RouteTable,
        certs: &BTreeMap<String, Certificate>,
    ) -> Option<Value> {
        (!self.settings.tls_listen.is_empty()).then(|| {
            render_tls_server(
                &self.tls_ids,
                &self.settings.tls_listen,
                plain,
                routes,
                certs,
            )
        })
    }

    /// Posts the TLS server (or removes a TLS server left from a configuration with
    /// `tls_listen`), then the plain server, whose meta route says the batch landed.
    async fn post_servers(
        &self,
        plain: Value,
        tls: Option<Value>,
        first: bool,
    ) -> Result<(), LbError> {
        let name = &self.settings.server_name;
        match tls {
            Some(tls) => self
                .post_server(&tls_server_name(name), tls)
                .await
                .map_err(lb_error)?,
            None if first => {
                match self
                    .client
                    .request("DELETE", &format!("/id/{}", self.tls_ids.server), None)
                    .await
                {
                    Err(e) if !e.is_not_found() => return Err(lb_error(e)),
                    _ => {}
                }
            }
            None => {}
        }
        self.post_server(name, plain).await.map_err(lb_error)
    }

    async fn apply_inner(&self, batch: &Batch) -> Result<StateSummary, LbError> {
        let mut m = self.mirror.lock().await;
        let live_meta = self.live_meta().await?;
        let live_epoch = live_meta.as_ref().map_or(0, |l| l.epoch);
        if batch.epoch < m.epoch.max(live_epoch) {
            return Err(LbError::Fenced(m.epoch.max(live_epoch)));
        }
        let ups = next_upstreams(&m.upstreams, batch)?;
        let certs = next_certificates(&m.certs, batch)?;
        let routes = match &batch.routes {
            Some(table) => crate::lb::rules::without_rules(&self.name, table.clone()),
            None => m.routes.clone(),
        };
        let live_certs = if certs.is_empty() && m.certs.is_empty() && m.applied {
            BTreeMap::new()
        } else {
            self.live_certs().await?
        };
        self.load_certs(&certs, &live_certs).await?;
        // Every POST re-provisions all of Caddy: when the batch changes nothing
        // (a full re-sync of an instance already in sync), compare with what Caddy
        // holds and post nothing. A new epoch is a change: Caddy stores it for fencing.
        let maybe_same =
            !m.applied || (ups == m.upstreams && routes == m.routes && certs == m.certs);
        if let Some(live) = live_meta
            .as_ref()
            .filter(|l| maybe_same && l.epoch == batch.epoch)
        {
            let unchanged = render_server(&self.ids, &self.settings.listen, live, &routes, &ups);
            let tls = self.tls_server(&unchanged, &routes, &certs);
            let same_tls = match &tls {
                Some(t) => self.get_id(&self.tls_ids.server).await?.as_ref() == Some(t),
                None => true,
            };
            if same_tls && self.live_server().await?.as_ref() == Some(&unchanged) {
                self.drop_certs(&certs, &live_certs).await?;
                m.upstreams = ups;
                m.routes = routes;
                m.certs = certs;
                m.generation = live.generation;
                m.epoch = live.epoch;
                m.applied = true;
                return Ok(StateSummary {
                    instance: live.instance.clone(),
                    generation: live.generation,
                    epoch: live.epoch,
                });
            }
        }
        let meta = Meta {
            instance: live_meta
                .as_ref()
                .map_or_else(random_token, |l| l.instance.clone()),
            generation: m
                .generation
                .max(live_meta.as_ref().map_or(0, |l| l.generation))
                + 1,
            epoch: batch.epoch,
        };
        let server = render_server(&self.ids, &self.settings.listen, &meta, &routes, &ups);
        let tls = self.tls_server(&server, &routes, &certs);
        self.post_servers(server, tls, !m.applied).await?;
        self.drop_certs(&certs, &live_certs).await?;
        m.upstreams = ups;
        m.routes = routes;
        m.certs = certs;
        m.generation = meta.generation;
        m.epoch = meta.epoch;
        m.applied = true;
        Ok(StateSummary {
            instance: meta.instance,
            generation: meta.generation,
            epoch: meta.epoch,
        })
    }

    async fn observe_inner(&self) -> Result<LbState, LbError> {
        let m = self.mirror.lock().await;
        let Some(server) = self.live_server().await? else {
            return Ok(LbState::default());
        };
        let meta = read_meta(&self.ids, &server).unwrap_or_default();
        let routes_json = server["routes"].as_array().cloned().unwrap_or_default();
        let mut routes = RouteTable::default();
        let mut upstreams = Vec::new();
        for r in &routes_json {
            let id = r["@id"].as_str().unwrap_or_default();
            if id == self.ids.select {
                routes = read_select(&r["handle"][0]["routes"]);
            } else if self.ids.is_upstream(id)
                && let Some(up) = read_upstream(r, &m.upstreams)
            {
                upstreams.push(up);
            }
        }
        upstreams.sort_by(|a, b| a.key.cmp(&b.key));
        let entries = self.live_certs().await?;
        let mut certificates: Vec<CertificateInfo> = entries
            .values()
            .filter_map(|e| entry_info(&self.tls_ids, e))
            .collect();
        certificates.sort_by(|a, b| a.id.cmp(&b.id));
        if let Some(tls) = self.get_id(&self.tls_ids.server).await? {
            let by_tag: BTreeMap<String, String> = entries
                .iter()
                .filter_map(|(at, e)| Some((at.clone(), entry_id(&self.tls_ids, e)?)))
                .collect();
            read_policies(&tls, &by_tag, &mut routes);
        }
        Ok(LbState {
            instance: meta.instance,
            generation: meta.generation,
            epoch: meta.epoch,
            upstreams,
            routes,
            certificates,
            // The adapter's name prefix marks what podgate owns; nothing else is read.
            owners: Vec::new(),
        })
    }
}

fn read_meta(ids: &Ids, server: &Value) -> Option<Meta> {
    let routes = server["routes"].as_array()?;
    meta_of_route(routes.iter().find(|r| r["@id"] == ids.meta.as_str())?)
}

fn meta_of_route(meta: &Value) -> Option<Meta> {
    serde_json::from_str(meta["handle"][0]["body"].as_str()?).ok()
}

fn var_key(route: &Value) -> Option<UpstreamKey> {
    decode_key(route["handle"][0][UP_VAR].as_str()?)
}

fn read_select(list: &Value) -> RouteTable {
    let mut table = RouteTable::default();
    for r in list.as_array().into_iter().flatten() {
        let Some(host) = r["match"][0]["host"][0].as_str() else {
            // Without a host matcher: the host-less rules (a subroute) or the catch-all.
            if r["handle"][0]["handler"] == "subroute" {
                table.any_host = Some(read_vhost(r));
            } else {
                table.default_backend = var_key(r);
            }
            continue;
        };
        let Ok(host) = HostPattern::parse(host) else {
            continue;
        };
        table.hosts.insert(host, read_vhost(r));
    }
    table
}

/// The path routes of one host route.
fn read_vhost(r: &Value) -> VirtualHost {
    let mut v = VirtualHost::default();
    for p in r["handle"][0]["routes"].as_array().into_iter().flatten() {
        let Some(key) = var_key(p) else { continue };
        match p["match"][0]["path_regexp"]["pattern"].as_str() {
            Some(pattern) => {
                if let Some(path) = parse_pattern(pattern) {
                    v.routes.push(Route {
                        path,
                        upstream: key,
                    });
                }
            }
            None if p["handle"][0][SOURCE_VAR] == SOURCE_VHOST_DEFAULT => {
                v.default_backend = Some(key);
            }
            None => {}
        }
    }
    v
}

/// The upstream of one `podgate-up-*` route. Caddy keeps only dial addresses: an
/// address listed as often as podgate would list the applied endpoint is reported as
/// that endpoint; otherwise with cluster `unknown` and its list count as weight.
/// Draining endpoints are not in Caddy at all; the applied ones are reported as is.
fn read_upstream(route: &Value, applied: &BTreeMap<UpstreamKey, Upstream>) -> Option<Upstream> {
    let key = decode_key(route["match"][0]["vars"][UP_VAR][0].as_str()?)?;
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for u in route["handle"][0]["upstreams"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(d) = u["dial"].as_str() {
            *counts.entry(d.to_owned()).or_insert(0) += 1;
        }
    }
    let desired = applied.get(&key);
    let expected: HashMap<String, u32> =
        desired.map(slots).unwrap_or_default().into_iter().collect();
    let by_dial: HashMap<String, &Endpoint> = desired
        .into_iter()
        .flat_map(|u| &u.endpoints)
        .map(|e| (dial(e.address, e.port), e))
        .collect();
    let mut endpoints = Vec::new();
    for (d, n) in counts {
        match by_dial.get(&d) {
            Some(e) if e.state == EndpointState::Active && expected.get(&d) == Some(&n) => {
                endpoints.push((*e).clone());
            }
            _ => {
                let Ok(sa) = d.parse::<std::net::SocketAddr>() else {
                    continue;
                };
                endpoints.push(Endpoint {
                    cluster: ClusterName::new("unknown"),
                    address: sa.ip(),
                    port: sa.port(),
                    zone: None,
                    node: None,
                    state: EndpointState::Active,
                    weight: n,
                });
            }
        }
    }
    endpoints.extend(
        desired
            .into_iter()
            .flat_map(|u| &u.endpoints)
            .filter(|e| e.state == EndpointState::Draining)
            .cloned(),
    );
    endpoints.sort_by(|a, b| (&a.cluster, a.address, a.port).cmp(&(&b.cluster, b.address, b.port)));
    Some(Upstream {
        health_check: None,
        shares: desired.map(|u| u.shares.clone()).unwrap_or_default(),
        key,
        endpoints,
    })
}

impl LbAdapter for CaddyAdapter {
    fn name(&self) -> &str {
        &self.name
    }

    fn apply<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<StateSummary, LbError>> {
        Box::pin(self.apply_inner(batch))
    }

    fn observe(&self) -> BoxFuture<'_, Result<LbState, LbError>> {
        Box::pin(self.observe_inner())
    }

    /// Only the meta route, not the whole server (as `observe` reports it).
    fn summary(&self) -> BoxFuture<'_, Result<StateSummary, LbError>> {
        Box::pin(async move {
            let meta = self.live_meta().await?.unwrap_or_default();
            Ok(StateSummary {
                instance: meta.instance,
                generation: meta.generation,
                epoch: meta.epoch,
            })
        })
    }
}
