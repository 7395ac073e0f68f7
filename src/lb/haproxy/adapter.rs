//! [`HaproxyAdapter`]: the LB contract on top of HAProxy's runtime API.
//!
//! Owns: the mirror of what was applied (so a reload or restart can be followed by a
//! full re-sync), the decision to reload (only for a missing backend, a changed health
//! check or a file the worker did not load; rate-limited), and `observe`. Must never
//! reload for endpoint, route or certificate changes.

use crate::lb::SettingsError;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use tokio::sync::Mutex;
use tokio::time::Instant;

use super::HaproxySettings;
use super::certs::{crt_lines, next_certificates, write_crt_list};
use super::maps::{MapKind, MapSet, read_map, replace_map, write_atomic};
use super::names::{Names, server_name};
use super::render::{check_config_dir, claim_config_dir, render_config};
use super::runtime::{RuntimeClient, RuntimeError};
use super::servers::{LiveServer, diff_servers, parse_servers_state, remove_server, run_ops};
use crate::lb::{BoxFuture, LbAdapter, LbError, next_upstreams};
use podgate_core::model::{
    Batch, Certificate, LbState, RouteTable, StateSummary, Upstream, UpstreamKey,
};

/// How long the master CLI may refuse connections during a reload before HAProxy counts
/// as gone (a re-exec takes milliseconds).
const MASTER_GONE_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

/// What podgate last applied to this instance.
#[derive(Default)]
pub(super) struct Mirror {
    pub(super) upstreams: BTreeMap<UpstreamKey, Upstream>,
    pub(super) routes: RouteTable,
    /// The runtime maps as last pushed; `None` after a failure (push all again).
    maps: Option<MapSet>,
    /// Worker pid that the mirror is known to match; anything else → full re-sync.
    pub(super) instance: Option<u32>,
    /// Backends the worker `instance` has (saves a `show backend` per batch).
    backends: HashSet<String>,
    pub(super) generation: u64,
    pub(super) epoch: u64,
    last_reload: Option<Instant>,
    /// (backend, server) whose deletion HAProxy deferred (connections remained).
    pending_deletes: BTreeSet<(String, String)>,
    /// The health check each backend of worker `instance` was loaded with (a backend
    /// setting: a changed check needs a reload). Absent: not known.
    loaded_checks: BTreeMap<UpstreamKey, Option<podgate_core::model::HealthCheck>>,
    /// The certificates as last applied, by id.
    pub(super) certs: BTreeMap<String, Certificate>,
    /// The crt-list as last pushed (file → SNI filters); `None`: push again.
    crt_lines: Option<BTreeMap<String, Vec<String>>>,
    /// Whether worker `instance` loaded podgate's crt-list (some bind uses it).
    crt_list_loaded: bool,
}

impl Mirror {
    /// Where the worker `pid` stands as podgate sees it: a worker the mirror does not
    /// match (restart, foreign reload) reports generation 0, so the sync layer resyncs.
    pub(super) fn summary(&self, pid: u32) -> StateSummary {
        StateSummary {
            instance: instance_id(pid),
            generation: if self.instance == Some(pid) {
                self.generation
            } else {
                0
            },
            epoch: self.epoch,
        }
    }
}

/// One HAProxy instance.
pub struct HaproxyAdapter {
    pub(super) name: String,
    pub(super) settings: HaproxySettings,
    pub(super) rt: RuntimeClient,
    master: Option<RuntimeClient>,
    pub(super) names: Names,
    pub(super) mirror: Mutex<Mirror>,
}

#[allow(clippy::needless_pass_by_value)] // used as `map_err(transient)`
pub(super) fn transient(e: RuntimeError) -> LbError {
    LbError::Transient(e.to_string())
}

fn io_err(what: &str, e: &std::io::Error) -> LbError {
    LbError::Transient(format!("cannot write {what}: {e}"))
}

impl HaproxyAdapter {
    /// Checks the settings; connects to nothing yet.
    pub fn new(name: String, settings: HaproxySettings) -> Result<Self, SettingsError> {
        check_config_dir(&settings.config_dir)?;
        claim_config_dir(&settings.config_dir, settings.owner.as_deref(), false)?;
        let rt = RuntimeClient::new(settings.runtime.clone(), settings.command_timeout);
        let master = settings
            .master
            .clone()
            .map(|m| RuntimeClient::new(m, settings.command_timeout));
        Ok(Self {
            name,
            names: Names::new(settings.owner.as_deref()),
            settings,
            rt,
            master,
            mirror: Mutex::new(Mirror::default()),
        })
    }

    pub fn settings(&self) -> &HaproxySettings {
        &self.settings
    }

    /// Writes `podgate.cfg` and the map files for what the mirror holds (empty at first),
    /// so that HAProxy can be started before the first batch.
    pub async fn bootstrap(&self) -> std::io::Result<()> {
        let m = self.mirror.lock().await;
        self.claim().map_err(std::io::Error::other)?;
        let maps = MapSet::build(
            &self.names,
            &m.routes,
            m.upstreams.keys(),
            m.certs.keys().map(String::as_str),
        )
        .map_err(std::io::Error::other)?;
        maps.write_files(&self.settings.config_dir)?;
        write_crt_list(&self.settings.config_dir, &BTreeMap::new(), true)?;
        let cfg = render_config(&self.names, &self.settings, m.upstreams.values());
        write_atomic(&self.settings.config_file(), cfg.as_bytes())
    }

    /// Records this adapter's owner in its config directory, refusing another's.
    fn claim(&self) -> Result<(), SettingsError> {
        claim_config_dir(
            &self.settings.config_dir,
            self.settings.owner.as_deref(),
            true,
        )
    }

    async fn apply_locked(&self, m: &mut Mirror, batch: &Batch) -> Result<StateSummary, LbError> {
        if batch.epoch < m.epoch {
            return Err(LbError::Fenced(m.epoch));
        }
        // Every certificate is checked before anything changes: a refused batch is
        // refused whole, and the sync layer finds the certificate by splitting it.
        let certs = next_certificates(&m.certs, batch)?;
        let ups = next_upstreams(&m.upstreams, batch)?;
        let routes = match &batch.routes {
            Some(table) => crate::lb::rules::without_rules(&self.name, table.clone()),
            None => m.routes.clone(),
        };
        let maps = MapSet::build(
            &self.names,
            &routes,
            ups.keys(),
            certs.keys().map(String::as_str),
        )?;
        let dir = &self.settings.config_dir;
        if m.maps.as_ref() != Some(&maps) {
            self.claim().map_err(|e| LbError::Rejected(e.to_string()))?;
            maps.write_files(dir).map_err(|e| io_err("map files", &e))?;
        }

        let (pid, fresh, reloaded) = self.ready_worker(m, &ups).await?;
        let live_backends = m.backends.clone();

        for kind in MapKind::ALL {
            let file = dir.join(kind.file_name());
            let pushed = m.maps.as_ref().map(|p| p.get(kind));
            let stale = if fresh {
                // A worker we know nothing about (restart, reload, new adapter): it
                // loaded the files, which are usually right; read before replacing, so
                // that a full re-sync of an LB already in sync changes nothing.
                let live = read_map(&self.rt, &file).await.map_err(transient)?;
                live.is_none_or(|l| !same_entries(&l, maps.get(kind)))
            } else {
                pushed != Some(maps.get(kind))
            };
            if stale {
                replace_map(&self.rt, &file, maps.get(kind))
                    .await
                    .map_err(transient)?;
            }
        }
        m.maps = Some(maps);

        let lines = crt_lines(&self.names, dir, &routes, &certs);
        if fresh || certs != m.certs || m.crt_lines.as_ref() != Some(&lines) {
            m.crt_lines = None;
            self.sync_certs(&m.certs, &certs, &lines, fresh, m.crt_list_loaded)
                .await?;
            m.crt_lines = Some(lines);
        }
        m.certs = certs;

        self.sync_servers(m, batch, &ups, fresh, &live_backends)
            .await?;
        let servers_changed = !batch.upsert_upstreams.is_empty()
            || !batch.patch_upstreams.is_empty()
            || !batch.remove_upstreams.is_empty();
        if !reloaded && servers_changed {
            // Keep the file as current as the runtime state: any reload — another
            // controller's on a shared HAProxy, or the operator's own — starts a worker
            // from the files, and must not drop servers added at run time since.
            self.write_config(ups.values())?;
        }

        m.upstreams = ups;
        m.routes = routes;
        m.instance = Some(pid);
        m.generation += 1;
        m.epoch = batch.epoch;
        Ok(m.summary(pid))
    }

    fn write_config<'a>(&self, ups: impl Iterator<Item = &'a Upstream>) -> Result<(), LbError> {
        let cfg = render_config(&self.names, &self.settings, ups);
        write_atomic(&self.settings.config_file(), cfg.as_bytes())
            .map_err(|e| io_err("podgate.cfg", &e))
    }

    /// The worker to push to, reloaded first when it lacks something only a reload
    /// brings (a backend, a changed health check, a map file, the crt-list of a TLS
    /// bind): its pid, whether it may differ from the mirror (`fresh`), and whether it
    /// was reloaded.
    async fn ready_worker(
        &self,
        m: &mut Mirror,
        ups: &BTreeMap<UpstreamKey, Upstream>,
    ) -> Result<(u32, bool, bool), LbError> {
        let mut pid = self.rt.worker_pid().await.map_err(transient)?;
        let mut fresh = m.instance.take() != Some(pid);
        // The 404 backend is always rendered: without it, HAProxy runs without
        // podgate's file (or an empty one) and knows none of the maps either.
        let missing = |have: &HashSet<String>| {
            !have.contains(&self.names.not_found)
                || ups.keys().any(|k| !have.contains(&self.names.backend(k)))
        };
        if fresh || missing(&m.backends) {
            m.backends = self.backend_set().await?;
        }
        let mut lacks_files = false;
        if fresh {
            // A worker we did not reload loaded the file, written from the mirror.
            m.loaded_checks = m
                .upstreams
                .iter()
                .map(|(k, u)| (k.clone(), u.health_check.clone()))
                .collect();
            m.crt_list_loaded = self.crt_list_loaded().await?;
            // A worker started from an older podgate.cfg may lack a newer map file or
            // the TLS bind: only a reload brings them.
            lacks_files = !self.maps_loaded().await?
                || (!self.settings.tls_binds.is_empty() && !m.crt_list_loaded);
        }
        // A check that differs from (or may differ from) what the worker loaded.
        let checks_changed = ups.iter().any(|(k, u)| match m.loaded_checks.get(k) {
            Some(loaded) => *loaded != u.health_check,
            None => u.health_check.is_some(),
        });
        let reloaded = missing(&m.backends) || checks_changed || lacks_files;
        if reloaded {
            let dir = &self.settings.config_dir;
            write_crt_list(dir, m.crt_lines.as_ref().unwrap_or(&BTreeMap::new()), true)
                .map_err(|e| io_err("the crt-list", &e))?;
            self.write_config(ups.values())?;
            pid = self.reload(m, pid, ups).await?;
            m.loaded_checks = ups
                .iter()
                .map(|(k, u)| (k.clone(), u.health_check.clone()))
                .collect();
            m.backends = self.backend_set().await?;
            m.crt_list_loaded = self.crt_list_loaded().await?;
            fresh = true;
        }
        Ok((pid, fresh, reloaded))
    }

    async fn backend_set(&self) -> Result<HashSet<String>, LbError> {
        Ok(self
            .rt
            .backends()
            .await
            .map_err(transient)?
            .into_iter()
            .collect())
    }

    /// Whether the worker loaded every podgate map file (`show map` lists them).
    async fn maps_loaded(&self) -> Result<bool, LbError> {
        let answer = self.rt.raw("show map").await.map_err(transient)?;
        let dir = &self.settings.config_dir;
        Ok(MapKind::ALL.iter().all(|k| {
            let file = dir.join(k.file_name());
            answer.contains(&format!("({})", file.display()))
        }))
    }

    /// Brings the servers of every backend the batch touches (all of them when `fresh`)
    /// to the desired endpoints, then retries deferred deletions.
    async fn sync_servers(
        &self,
        m: &mut Mirror,
        batch: &Batch,
        ups: &BTreeMap<UpstreamKey, Upstream>,
        fresh: bool,
        live_backends: &HashSet<String>,
    ) -> Result<(), LbError> {
        let mut touched: BTreeSet<String> = batch
            .upsert_upstreams
            .iter()
            .map(|u| &u.key)
            .chain(batch.patch_upstreams.iter().map(|p| &p.key))
            .chain(&batch.remove_upstreams)
            .map(|k| self.names.backend(k))
            .collect();
        let live = if fresh {
            // Everything may differ: read every backend, re-sync every podgate one.
            let live = self.live_servers().await?;
            touched.extend(ups.keys().map(|k| self.names.backend(k)));
            // Only this owner's backends: another controller's are not ours to empty.
            touched.extend(live.keys().filter(|b| self.names.is_backend(b)).cloned());
            live
        } else {
            // Only the backends this batch touches: cheap at thousands of upstreams.
            let mut live = HashMap::new();
            for be in touched.iter().filter(|b| live_backends.contains(*b)) {
                let answer = self
                    .rt
                    .raw(&format!("show servers state {be}"))
                    .await
                    .map_err(transient)?;
                live.insert(be.clone(), parse_servers_state(&answer));
            }
            live
        };
        let by_backend: HashMap<String, &Upstream> = ups
            .values()
            .map(|u| (self.names.backend(&u.key), u))
            .collect();
        for be in &touched {
            let current = live.get(be).map_or(&[][..], Vec::as_slice);
            let ops = diff_servers(by_backend.get(be).copied(), current);
            let deferred = run_ops(&self.rt, be, &ops).await.map_err(transient)?;
            m.pending_deletes
                .extend(deferred.into_iter().map(|s| (be.clone(), s)));
        }
        self.retry_deletes(&mut m.pending_deletes, ups).await
    }

    /// Retries the server deletions HAProxy deferred (connections remained) for servers
    /// that are still not wanted; those still busy stay pending. Runs after every apply
    /// and on every drift check, so a removed server goes once its connections end.
    async fn retry_deletes(
        &self,
        pending: &mut BTreeSet<(String, String)>,
        ups: &BTreeMap<UpstreamKey, Upstream>,
    ) -> Result<(), LbError> {
        if pending.is_empty() {
            return Ok(());
        }
        let by_backend: HashMap<String, &Upstream> = ups
            .values()
            .map(|u| (self.names.backend(&u.key), u))
            .collect();
        for (be, srv) in std::mem::take(pending) {
            let wanted = by_backend
                .get(&be)
                .is_some_and(|u| u.endpoints.iter().any(|e| server_name(e) == srv));
            if !wanted
                && !remove_server(&self.rt, &be, &srv)
                    .await
                    .map_err(transient)?
            {
                pending.insert((be, srv));
            }
        }
        Ok(())
    }

    /// Soft reload through the master CLI, spaced by `min_reload_interval`; waits until a
    /// new worker answers and holds every backend. Returns the new worker's pid.
    async fn reload(
        &self,
        m: &mut Mirror,
        old_pid: u32,
        ups: &BTreeMap<UpstreamKey, Upstream>,
    ) -> Result<u32, LbError> {
        let Some(master) = &self.master else {
            return Err(LbError::Rejected(
                "a new upstream needs a reload, but no master socket is configured".into(),
            ));
        };
        if let Some(last) = m.last_reload {
            tokio::time::sleep_until(last + self.settings.min_reload_interval).await;
        }
        m.last_reload = Some(Instant::now());
        let deadline = Instant::now() + self.settings.reload_timeout;
        // The master CLI can refuse connections for a moment (e.g. right after start).
        while let Err(e) = master.raw("reload").await {
            if Instant::now() >= deadline {
                return Err(transient(e));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let needed: Vec<String> = ups
            .keys()
            .map(|k| self.names.backend(k))
            .chain([self.names.not_found.clone()])
            .collect();
        let mut master_down_since = None;
        loop {
            if let Ok(pid) = self.rt.worker_pid().await
                && pid != old_pid
                && let Ok(bes) = self.rt.backends().await
                && needed.iter().all(|b| bes.contains(b))
            {
                return Ok(pid);
            }
            // The master re-executes itself on reload (its CLI refuses connections for
            // a moment) but then stays: unreachable for longer, HAProxy is gone, and
            // waiting out the whole timeout would only delay reporting a dead instance.
            match master.raw("show proc").await {
                Ok(_) => master_down_since = None,
                Err(e) => {
                    let since = *master_down_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= MASTER_GONE_AFTER {
                        return Err(LbError::Transient(format!(
                            "HAProxy's master went away during a reload: {e}"
                        )));
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(LbError::Transient(format!(
                    "HAProxy did not come back with the new backends within {:?} after a \
                     reload (is podgate.cfg valid? see HAProxy's log)",
                    self.settings.reload_timeout
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// podgate's servers per backend.
    pub(super) async fn live_servers(&self) -> Result<HashMap<String, Vec<LiveServer>>, LbError> {
        let answer = self.rt.raw("show servers state").await.map_err(transient)?;
        let mut out: HashMap<String, Vec<LiveServer>> = HashMap::new();
        for s in parse_servers_state(&answer) {
            out.entry(s.backend.clone()).or_default().push(s);
        }
        // Backends without podgate servers still count as present.
        for be in self.rt.backends().await.map_err(transient)? {
            out.entry(be).or_default();
        }
        Ok(out)
    }
}

/// Whether a live map holds exactly these entries, in any order.
fn same_entries(live: &[(String, String)], want: &[(String, String)]) -> bool {
    if live.len() != want.len() {
        return false;
    }
    let mut a: Vec<&(String, String)> = live.iter().collect();
    let mut b: Vec<&(String, String)> = want.iter().collect();
    a.sort_unstable();
    b.sort_unstable();
    a == b
}

fn instance_id(pid: u32) -> String {
    format!("haproxy-pid-{pid}")
}

impl LbAdapter for HaproxyAdapter {
    fn name(&self) -> &str {
        &self.name
    }

    fn apply<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<StateSummary, LbError>> {
        Box::pin(async move {
            let mut m = self.mirror.lock().await;
            let result = self.apply_locked(&mut m, batch).await;
            if result.is_err() {
                m.maps = None;
                m.instance = None;
            }
            result
        })
    }

    fn observe(&self) -> BoxFuture<'_, Result<LbState, LbError>> {
        Box::pin(self.observe_inner())
    }

    /// The worker's pid only: a reload or restart changes it (as in `observe`). Also
    /// retries deferred server deletions, so they do not wait for the next change.
    fn summary(&self) -> BoxFuture<'_, Result<StateSummary, LbError>> {
        Box::pin(async move {
            let mut guard = self.mirror.lock().await;
            let m = &mut *guard;
            let pid = self.rt.worker_pid().await.map_err(transient)?;
            if m.instance == Some(pid) {
                self.retry_deletes(&mut m.pending_deletes, &m.upstreams)
                    .await?;
            }
            Ok(m.summary(pid))
        })
    }
}
