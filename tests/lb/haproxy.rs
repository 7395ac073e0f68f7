//! The HAProxy adapter against a real `haproxy` (Debian's package): routing, scale-out,
//! drain, removal, weights, restart and a dead instance, checked with real HTTP
//! requests to "pods" on 127.1.x.y.

use crate::harness;

use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use harness::{
    Pod, batch_of, eventually, free_addr, get, spread, stop_child, table, upstream, vhost, who,
};
use podgate::lb::LbAdapter;
use podgate::lb::haproxy::{HaproxyAdapter, HaproxySettings, RuntimeAddr, RuntimeClient};
use podgate_core::model::{Batch, PathMatch};

const SECS: Duration = Duration::from_secs(10);

/// One haproxy master-worker process in a tempdir, killed on drop.
struct Haproxy {
    dir: tempfile::TempDir,
    child: Option<Child>,
    lb: SocketAddr,
    adapter: HaproxyAdapter,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            stop_child(c);
        }
    }
}

impl Haproxy {
    /// Runtime API on a unix socket.
    async fn start() -> Self {
        Self::start_with(false, Duration::from_millis(200)).await
    }

    /// Runtime API on loopback TCP.
    async fn start_tcp() -> Self {
        Self::start_with(true, Duration::from_millis(200)).await
    }

    async fn start_with(tcp: bool, min_reload_interval: Duration) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let lb = free_addr();
        let d = dir.path().to_path_buf();
        let (socket, runtime) = if tcp {
            let a = free_addr();
            (format!("ipv4@{a}"), RuntimeAddr::Tcp(a))
        } else {
            let p = d.join("rt.sock");
            (p.display().to_string(), RuntimeAddr::Unix(p))
        };
        std::fs::write(
            d.join("main.cfg"),
            format!(
                "global\n    stats socket {socket} level admin\n    \
                 log stderr format short local0 notice\n"
            ),
        )
        .unwrap();
        let mut settings = HaproxySettings::new(
            runtime,
            Some(RuntimeAddr::Unix(d.join("master.sock"))),
            d.join("podgate"),
        );
        settings.binds = vec![lb];
        settings.min_reload_interval = min_reload_interval;
        let adapter = HaproxyAdapter::new(format!("haproxy/{lb}"), settings).unwrap();
        adapter.bootstrap().await.unwrap();
        let mut h = Self {
            dir,
            child: None,
            lb,
            adapter,
        };
        h.launch().await;
        h
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    async fn launch(&mut self) {
        let log = std::fs::File::create(self.path("haproxy.log")).unwrap();
        let child = Command::new(harness::find_program("haproxy").expect("haproxy is installed"))
            .process_group(0)
            .arg("-W")
            .arg("-S")
            .arg(self.path("master.sock"))
            .arg("-f")
            .arg(self.path("main.cfg"))
            .arg("-f")
            .arg(self.adapter.settings().config_file())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start haproxy");
        self.child = Some(child);
        let rt = RuntimeClient::new(self.adapter.settings().runtime.clone(), SECS);
        let log = self.path("haproxy.log");
        eventually("haproxy answers on its runtime socket", SECS, || {
            let rt = rt.clone();
            let log = log.clone();
            async move {
                rt.worker_pid().await.map(|_| ()).map_err(|e| {
                    format!(
                        "{e}; log: {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    )
                })
            }
        })
        .await;
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c);
        }
    }

    async fn pid(&self) -> u32 {
        RuntimeClient::new(self.adapter.settings().runtime.clone(), SECS)
            .worker_pid()
            .await
            .unwrap()
    }

    async fn apply(&self, batch: &Batch) {
        if let Err(e) = self.adapter.apply(batch).await {
            let log = std::fs::read_to_string(self.path("haproxy.log")).unwrap_or_default();
            panic!("apply failed: {e}\nhaproxy log:\n{log}");
        }
    }
}

macro_rules! require_haproxy {
    () => {
        if !harness::require_program("haproxy") {
            return;
        }
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_routes_by_host_and_path() {
    require_haproxy!();
    let h = Haproxy::start().await;
    let pods = [
        Pod::start("root", "127.1.1.1").await,
        Pod::start("foo-prefix", "127.1.1.2").await,
        Pod::start("foo-exact", "127.1.1.3").await,
        Pod::start("foo-bar", "127.1.1.4").await,
        Pod::start("wild", "127.1.1.5").await,
        Pod::start("vdefault", "127.1.1.6").await,
        Pod::start("catchall", "127.1.1.7").await,
    ];
    let svc = |i: usize| pods[i].name.as_str();
    let routes = table(
        vec![
            (
                "app.example.com",
                vhost(
                    &[
                        (PathMatch::prefix("/"), svc(0)),
                        (PathMatch::prefix("/foo/"), svc(1)),
                        (PathMatch::exact("/foo"), svc(2)),
                        (PathMatch::prefix("/foo/bar"), svc(3)),
                        (PathMatch::prefix("/semi;colon"), svc(1)),
                        (PathMatch::exact("/caf\u{e9}"), svc(2)),
                        (PathMatch::prefix("/it's"), svc(3)),
                    ],
                    None,
                ),
            ),
            (
                "*.example.com",
                vhost(&[(PathMatch::prefix("/api"), svc(4))], Some(svc(5))),
            ),
        ],
        Some(svc(6)),
    );
    let batch = batch_of(&pods, &routes);
    h.apply(&batch).await;

    // The Kubernetes path-matching table, plus hosts.
    let cases = [
        ("app.example.com", "/", "root"),
        ("APP.example.com:8080", "/x", "root"),
        ("app.example.com", "/foo", "foo-exact"),
        ("app.example.com", "/foo/", "foo-prefix"),
        ("app.example.com", "/foo/x", "foo-prefix"),
        ("app.example.com", "/foobar", "root"),
        ("app.example.com", "/foo/bar", "foo-bar"),
        ("app.example.com", "/foo/bar/baz", "foo-bar"),
        ("app.example.com", "/foo/barbaz", "foo-prefix"),
        ("app.example.com", "/semi;colon/x", "foo-prefix"),
        ("app.example.com", "/semi;colonx", "root"),
        ("app.example.com", "/caf%C3%A9", "foo-exact"),
        ("app.example.com", "/it's/x", "foo-bar"),
        ("x.example.com", "/api", "wild"),
        ("x.example.com", "/api/v1", "wild"),
        ("x.example.com", "/apix", "vdefault"),
        ("a.b.example.com", "/api", "catchall"),
        ("example.com", "/api", "catchall"),
        ("other.test", "/", "catchall"),
    ];
    for (host, path, want) in cases {
        assert_eq!(who(h.lb, host, path).await, want, "{host}{path}");
    }

    // Without a catch-all, an unknown host is a 404.
    let mut no_default = routes.clone();
    no_default.default_backend = None;
    h.apply(&Batch {
        epoch: 1,
        routes: Some(no_default.clone()),
        ..Batch::default()
    })
    .await;
    assert_eq!(get(h.lb, "other.test", "/").await.unwrap().0, 404);
    assert_eq!(who(h.lb, "app.example.com", "/foo").await, "foo-exact");

    let state = h.adapter.observe().await.unwrap();
    assert_eq!(state.routes, no_default, "observe reads the maps back");
    assert_eq!(state.upstreams.len(), pods.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_serves_host_less_rules_for_unknown_hosts() {
    require_haproxy!();
    let lb = Haproxy::start().await;
    harness::check_host_less_rules(lb.lb, &lb.adapter, 90).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_scale_out_drain_and_removal_without_reload() {
    require_haproxy!();
    let h = Haproxy::start().await;
    let a = Pod::start("a", "127.1.2.1").await;
    let b = Pod::start("b", "127.1.2.2").await;
    let routes = table(
        vec![("web.test", vhost(&[(PathMatch::prefix("/"), "web")], None))],
        None,
    );
    h.apply(&Batch {
        epoch: 1,
        upsert_upstreams: vec![upstream("web", vec![a.active(1)])],
        routes: Some(routes),
        ..Batch::default()
    })
    .await;
    assert_eq!(who(h.lb, "web.test", "/").await, "a");
    let pid = h.pid().await;

    // Scale out: the new endpoint serves, without a reload.
    h.apply(&Batch {
        epoch: 1,
        upsert_upstreams: vec![upstream("web", vec![a.active(1), b.active(1)])],
        ..Batch::default()
    })
    .await;
    let seen = spread(h.lb, "web.test", "/", 10).await;
    assert_eq!(
        (seen.get("a"), seen.get("b")),
        (Some(&5), Some(&5)),
        "{seen:?}"
    );
    assert_eq!(
        h.pid().await,
        pid,
        "an endpoint change must not reload HAProxy"
    );

    // Drain a: it stays registered but gets no new requests.
    h.apply(&Batch {
        epoch: 1,
        upsert_upstreams: vec![upstream("web", vec![a.draining(), b.active(1)])],
        ..Batch::default()
    })
    .await;
    let before = a.count();
    let seen = spread(h.lb, "web.test", "/", 20).await;
    assert_eq!(seen.get("b"), Some(&20), "{seen:?}");
    assert_eq!(a.count(), before, "a draining endpoint got a new request");
    let state = h.adapter.observe().await.unwrap();
    let eps = &state.upstreams[0].endpoints;
    assert_eq!(eps.len(), 2);
    assert!(eps.iter().any(
        |e| e.address == a.addr.ip() && e.state == podgate_core::model::EndpointState::Draining
    ));

    // Remove a: deleted from HAProxy.
    h.apply(&Batch {
        epoch: 1,
        upsert_upstreams: vec![upstream("web", vec![b.active(1)])],
        ..Batch::default()
    })
    .await;
    let state = h.adapter.observe().await.unwrap();
    assert_eq!(state.upstreams[0], upstream("web", vec![b.active(1)]));
    assert_eq!(h.pid().await, pid, "no reload for drain and removal either");

    // Remove the whole upstream: its servers go, requests get 503 (backend empty).
    h.apply(&Batch {
        epoch: 1,
        remove_upstreams: vec![harness::key("web")],
        ..Batch::default()
    })
    .await;
    let state = h.adapter.observe().await.unwrap();
    assert!(state.upstreams.is_empty(), "{:?}", state.upstreams);
    assert_ne!(who(h.lb, "web.test", "/").await, "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_weights_split_traffic() {
    require_haproxy!();
    let h = Haproxy::start().await;
    let a = Pod::start("a", "127.1.3.1").await;
    let b = Pod::start("b", "127.1.3.2").await;
    // 750 / 250 per-mille: above HAProxy's 256, so the adapter scales them.
    h.apply(&Batch {
        epoch: 1,
        upsert_upstreams: vec![upstream("web", vec![a.active(750), b.active(250)])],
        routes: Some(table(vec![], Some("web"))),
        ..Batch::default()
    })
    .await;
    let seen = spread(h.lb, "any.test", "/", 200).await;
    let share_a = seen.get("a").copied().unwrap_or(0);
    assert!(
        (140..=160).contains(&share_a),
        "expected ~150 of 200 on a: {seen:?}"
    );
    let state = h.adapter.observe().await.unwrap();
    let weights: Vec<u32> = state.upstreams[0]
        .endpoints
        .iter()
        .map(|e| e.weight)
        .collect();
    assert_eq!(
        weights,
        vec![750, 250],
        "observe reports podgate weights when in sync"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_restart_is_seen_and_resynced() {
    require_haproxy!();
    let mut h = Haproxy::start().await;
    let a = Pod::start("a", "127.1.4.1").await;
    let b = Pod::start("b", "127.1.4.2").await;
    h.apply(&Batch {
        epoch: 1,
        upsert_upstreams: vec![upstream("web", vec![a.active(1)])],
        routes: Some(table(
            vec![("web.test", vhost(&[(PathMatch::prefix("/"), "web")], None))],
            None,
        )),
        ..Batch::default()
    })
    .await;
    // An endpoint change: applied at run time (no reload), and written into the file.
    let full = Batch {
        epoch: 1,
        upsert_upstreams: vec![upstream("web", vec![b.active(1)])],
        routes: Some(table(
            vec![("web.test", vhost(&[(PathMatch::prefix("/"), "web")], None))],
            None,
        )),
        ..Batch::default()
    };
    h.apply(&full).await;
    assert_eq!(who(h.lb, "web.test", "/").await, "b");
    let before = h.adapter.observe().await.unwrap();

    h.kill();
    let nothing = Batch {
        epoch: 1,
        ..Batch::default()
    };
    assert!(h.adapter.apply(&nothing).await.unwrap_err().is_retryable());
    h.launch().await;

    // The restarted HAProxy has the routes from the map files and the servers from the
    // file, which the adapter keeps current: a new instance, serving at once.
    let after = h.adapter.observe().await.unwrap();
    assert_ne!(after.instance, before.instance);
    assert_eq!(after.routes, before.routes);
    assert_eq!(after.upstreams, before.upstreams);
    assert_eq!(who(h.lb, "web.test", "/").await, "b");

    // What the sync layer does on a new instance: a full apply.
    h.apply(&full).await;
    assert_eq!(who(h.lb, "web.test", "/").await, "b");
    assert_eq!(
        h.adapter.observe().await.unwrap().upstreams,
        full.upsert_upstreams
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_one_dead_instance_does_not_stop_the_other() {
    require_haproxy!();
    let mut one = Haproxy::start().await;
    let two = Haproxy::start_tcp().await;
    let a = Pod::start("a", "127.1.5.1").await;
    let b = Pod::start("b", "127.1.5.2").await;
    let routes = Some(table(vec![], Some("web")));
    let first = Batch {
        epoch: 1,
        upsert_upstreams: vec![upstream("web", vec![a.active(1)])],
        routes,
        ..Batch::default()
    };
    one.apply(&first).await;
    two.apply(&first).await;

    one.kill();
    let second = Batch {
        epoch: 1,
        upsert_upstreams: vec![upstream("web", vec![b.active(1)])],
        ..Batch::default()
    };
    let err = one.adapter.apply(&second).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    two.apply(&second).await;
    eventually(
        "the live instance serves the new endpoint",
        SECS,
        || async {
            match who(two.lb, "x.test", "/").await.as_str() {
                "b" => Ok(()),
                other => Err(other.to_owned()),
            }
        },
    )
    .await;

    // The dead one comes back and catches up with a full apply.
    one.launch().await;
    let full = Batch {
        routes: first.routes.clone(),
        ..second
    };
    one.apply(&full).await;
    assert_eq!(who(one.lb, "x.test", "/").await, "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_new_upstreams_reload_once_and_keep_servers() {
    require_haproxy!();
    let h = Haproxy::start_with(false, Duration::from_secs(1)).await;
    let a = Pod::start("a", "127.1.6.1").await;
    let b = Pod::start("b", "127.1.6.2").await;
    h.apply(&Batch {
        epoch: 1,
        upsert_upstreams: vec![upstream("one", vec![a.active(1)])],
        routes: Some(table(
            vec![(
                "r.test",
                vhost(
                    &[
                        (PathMatch::prefix("/one"), "one"),
                        (PathMatch::prefix("/two"), "two"),
                    ],
                    None,
                ),
            )],
            None,
        )),
        ..Batch::default()
    })
    .await;
    let pid = h.pid().await;
    // A second upstream needs a backend: one reload, after which "one" still serves.
    h.apply(&Batch {
        epoch: 1,
        upsert_upstreams: vec![upstream("two", vec![b.active(1)])],
        ..Batch::default()
    })
    .await;
    assert_ne!(h.pid().await, pid, "a new backend needs a reload");
    assert_eq!(who(h.lb, "r.test", "/one").await, "a");
    assert_eq!(who(h.lb, "r.test", "/two").await, "b");

    // Reloads are rate-limited: two more new upstreams in a row need two reloads,
    // which are at least `min_reload_interval` (1 s here; a reload itself takes far
    // less) apart.
    let started = std::time::Instant::now();
    for svc in ["three", "four"] {
        h.apply(&Batch {
            epoch: 1,
            upsert_upstreams: vec![upstream(svc, vec![b.active(1)])],
            ..Batch::default()
        })
        .await;
    }
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "two reloads within {:?}",
        started.elapsed()
    );
    assert_eq!(
        who(h.lb, "r.test", "/one").await,
        "a",
        "servers survive reloads"
    );
    // A stale epoch is fenced.
    let err = h.adapter.apply(&Batch::default()).await.unwrap_err();
    assert!(matches!(err, podgate::lb::LbError::Fenced(1)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_never_touches_what_podgate_did_not_register() {
    require_haproxy!();
    let h = Haproxy::start().await;
    let a = Pod::start("a", "127.1.7.1").await;
    let web = upstream("web", vec![a.active(1)]);
    h.apply(&Batch {
        epoch: 1,
        upsert_upstreams: vec![web.clone()],
        routes: Some(table(vec![], Some("web"))),
        ..Batch::default()
    })
    .await;
    // Someone adds their own server to podgate's backend by hand.
    let rt = RuntimeClient::new(h.adapter.settings().runtime.clone(), SECS);
    let state = rt.raw("show servers state").await.unwrap();
    let be = state
        .lines()
        .find_map(|l| {
            l.split_whitespace()
                .nth(1)
                .filter(|b| b.starts_with("pg_be_"))
        })
        .expect("podgate's backend")
        .to_owned();
    rt.run(
        &format!("add server {be}/manual1 127.1.7.9:9 weight 1"),
        &["New server registered"],
    )
    .await
    .unwrap();

    // observe does not report it, and removing every endpoint leaves it in place.
    assert_eq!(h.adapter.observe().await.unwrap().upstreams, vec![web]);
    h.apply(&Batch {
        epoch: 1,
        upsert_upstreams: vec![upstream("web", vec![])],
        ..Batch::default()
    })
    .await;
    let state = rt.raw(&format!("show servers state {be}")).await.unwrap();
    assert!(state.contains(" manual1 "), "{state}");
    assert!(!state.contains(" pg-"), "{state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_big_route_tables_fit_through_the_runtime_api() {
    require_haproxy!();
    let h = Haproxy::start().await;
    let a = Pod::start("a", "127.1.8.1").await;
    let b = Pod::start("b", "127.1.8.2").await;
    // ~1,500 map entries: far more than one runtime API buffer holds.
    let hosts: Vec<String> = (0..1500).map(|i| format!("host-{i}.big.test")).collect();
    let routes = table(
        hosts
            .iter()
            .enumerate()
            .map(|(i, host)| {
                let svc = if i % 2 == 0 { "even" } else { "odd" };
                (host.as_str(), vhost(&[(PathMatch::prefix("/"), svc)], None))
            })
            .collect(),
        None,
    );
    h.apply(&Batch {
        epoch: 1,
        upsert_upstreams: vec![
            upstream("even", vec![a.active(1)]),
            upstream("odd", vec![b.active(1)]),
        ],
        routes: Some(routes.clone()),
        ..Batch::default()
    })
    .await;
    for i in [0, 1, 777, 1498, 1499] {
        let want = if i % 2 == 0 { "a" } else { "b" };
        assert_eq!(who(h.lb, &hosts[i], "/").await, want, "{}", hosts[i]);
    }
    assert_eq!(h.adapter.observe().await.unwrap().routes, routes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_removed_endpoint_finishes_in_flight_requests_then_goes() {
    require_haproxy!();
    let h = Haproxy::start().await;
    let a = Pod::start("a", "127.1.9.1").await;
    let b = Pod::start("b", "127.1.9.2").await;
    h.apply(&Batch {
        epoch: 1,
        upsert_upstreams: vec![upstream("web", vec![a.active(1)])],
        routes: Some(table(vec![], Some("web"))),
        ..Batch::default()
    })
    .await;
    let lb = h.lb;
    let slow = tokio::spawn(async move { who(lb, "x.test", "/slow").await });
    eventually("the slow request reached a", SECS, || async {
        if a.count() == 1 {
            Ok(())
        } else {
            Err(format!("a served {}", a.count()))
        }
    })
    .await;

    // a goes away while its request is in flight: maintenance, deletion deferred.
    h.apply(&Batch {
        epoch: 1,
        upsert_upstreams: vec![upstream("web", vec![b.active(1)])],
        ..Batch::default()
    })
    .await;
    assert_eq!(who(h.lb, "x.test", "/").await, "b");
    assert_eq!(
        slow.await.unwrap(),
        "a",
        "the in-flight request finished on a"
    );

    // The drift check (`summary`, every few seconds) retries the deletion, which now
    // succeeds: no further change needs to come along.
    let rt = RuntimeClient::new(h.adapter.settings().runtime.clone(), SECS);
    let a_name = format!("-{}-{}", a.addr.ip(), a.addr.port());
    eventually("a's server is deleted once idle", SECS, || async {
        h.adapter.summary().await.map_err(|e| e.to_string())?;
        let state = rt
            .raw("show servers state")
            .await
            .map_err(|e| e.to_string())?;
        if state.contains(&a_name) {
            Err(state)
        } else {
            Ok(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_started_with_an_empty_podgate_cfg_gets_it_on_first_apply() {
    require_haproxy!();
    let mut h = Haproxy::start().await;
    // As an operator might: `touch podgate.cfg` and start HAProxy before podgate.
    h.kill();
    std::fs::write(h.adapter.settings().config_file(), "").unwrap();
    h.launch().await;
    let a = Pod::start("a", "127.1.10.1").await;
    // A routes-only batch: no new upstream, yet the maps need podgate's file loaded.
    h.apply(&Batch {
        epoch: 1,
        routes: Some(table(vec![], Some("web"))),
        ..Batch::default()
    })
    .await;
    h.apply(&Batch {
        epoch: 1,
        upsert_upstreams: vec![upstream("web", vec![a.active(1)])],
        ..Batch::default()
    })
    .await;
    assert_eq!(who(h.lb, "x.test", "/").await, "a");
}

/// What a full re-sync must leave alone: every map entry (`show map` prints each
/// entry's address, which a map replacement changes) and every server with its id and
/// state (`show servers state` without the seconds-since-change column).
async fn live_fingerprint(h: &Haproxy) -> Vec<String> {
    let rt = RuntimeClient::new(h.adapter.settings().runtime.clone(), SECS);
    let dir = &h.adapter.settings().config_dir;
    let mut out = Vec::new();
    for map in [
        "hosts.map",
        "paths_exact.map",
        "paths_prefix.map",
        "vhost_default.map",
        "default.map",
        "upstreams.map",
    ] {
        let answer = rt
            .raw(&format!("show map {}", dir.join(map).display()))
            .await
            .unwrap();
        out.extend(answer.lines().map(|l| format!("{map}: {l}")));
    }
    let servers = rt.raw("show servers state").await.unwrap();
    for line in servers.lines().filter(|l| l.contains(" pg-")) {
        let mut f: Vec<&str> = line.split_whitespace().collect();
        if f.len() > 9 {
            f.remove(9); // srv_time_since_last_change
        }
        out.push(f.join(" "));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_full_resync_of_an_lb_in_sync_changes_nothing() {
    require_haproxy!();
    let h = Haproxy::start().await;
    let a = Pod::start("a", "127.1.18.1").await;
    let b = Pod::start("b", "127.1.18.2").await;
    let full = Batch {
        epoch: 1,
        upsert_upstreams: vec![
            upstream("web", vec![a.active(3), b.draining()]),
            upstream("api", vec![b.active(1)]),
        ],
        routes: Some(table(
            vec![
                (
                    "web.test",
                    vhost(
                        &[
                            (PathMatch::prefix("/"), "web"),
                            (PathMatch::exact("/api"), "api"),
                        ],
                        Some("web"),
                    ),
                ),
                (
                    "*.wild.test",
                    vhost(&[(PathMatch::prefix("/"), "api")], None),
                ),
            ],
            Some("web"),
        )),
        ..Batch::default()
    };
    h.apply(&full).await;
    let pid = h.pid().await;
    let before = live_fingerprint(&h).await;
    assert!(
        before.iter().any(|l| l.contains("pg-idc-127.1.18.1")),
        "{before:?}"
    );
    assert!(
        before.iter().any(|l| l.starts_with("hosts.map")),
        "{before:?}"
    );

    // The same adapter pushes everything again (the sync layer's full re-sync).
    h.apply(&full).await;
    assert_eq!(live_fingerprint(&h).await, before);
    // A new adapter knows nothing (a restarted controller): it must read, not rewrite.
    let fresh = HaproxyAdapter::new("haproxy/fresh".into(), h.adapter.settings().clone()).unwrap();
    fresh.apply(&full).await.unwrap();
    assert_eq!(live_fingerprint(&h).await, before);
    assert_eq!(h.pid().await, pid, "no reload");

    // A real change still goes through, and only where it is.
    let mut changed = full.clone();
    changed.upsert_upstreams[0] = upstream("web", vec![a.active(3), b.active(1)]);
    fresh.apply(&changed).await.unwrap();
    let after = live_fingerprint(&h).await;
    let differs: Vec<&String> = after.iter().filter(|l| !before.contains(l)).collect();
    assert_eq!(differs.len(), 1, "only b's server changed: {differs:?}");
    assert!(differs[0].contains("pg-idc-127.1.18.2"), "{differs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_applies_patches_to_what_it_holds() {
    require_haproxy!();
    let lb = Haproxy::start().await;
    harness::check_patches(lb.lb, &lb.adapter, 92).await;
}
