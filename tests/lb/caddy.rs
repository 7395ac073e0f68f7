//! The Caddy adapter against a real `caddy` (Debian's package): routing, scale-out,
//! drain, removal, weights, restart and a dead instance, checked with real HTTP
//! requests to "pods" on 127.1.x.y.

use crate::harness;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use harness::{
    Pod, batch_of, eventually, free_addr, get, spread, stop_child, table, upstream, vhost, who,
};
use podgate::lb::LbAdapter;
use podgate::lb::caddy::{AdminAddr, AdminClient, CaddyAdapter, CaddySettings};
use podgate_core::model::{Batch, EndpointState, PathMatch};

const SECS: Duration = Duration::from_secs(15);

/// One caddy process with its admin API on a loopback port, killed on drop.
struct Caddy {
    dir: tempfile::TempDir,
    child: Option<Child>,
    admin: SocketAddr,
    lb: SocketAddr,
    adapter: CaddyAdapter,
}

impl Drop for Caddy {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            stop_child(c);
        }
    }
}

impl Caddy {
    /// Admin API on a loopback TCP port.
    async fn start() -> Self {
        Self::start_with(false).await
    }

    /// Admin API on a unix socket.
    async fn start_unix() -> Self {
        Self::start_with(true).await
    }

    async fn start_with(unix: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let admin = free_addr();
        let lb = free_addr();
        let sock = dir.path().join("admin.sock");
        let (listen, addr) = if unix {
            (format!("unix/{}", sock.display()), AdminAddr::Unix(sock))
        } else {
            (admin.to_string(), AdminAddr::Tcp(admin))
        };
        // The operator's own config: admin only, nothing persisted to $HOME.
        std::fs::write(
            dir.path().join("caddy.json"),
            format!(r#"{{"admin":{{"listen":"{listen}","config":{{"persist":false}}}}}}"#),
        )
        .unwrap();
        let adapter =
            CaddyAdapter::new(format!("caddy/{addr}"), CaddySettings::new(addr, vec![lb])).unwrap();
        let mut c = Self {
            dir,
            child: None,
            admin,
            lb,
            adapter,
        };
        c.launch().await;
        c
    }

    async fn launch(&mut self) {
        let d = self.dir.path();
        let log = std::fs::File::create(d.join("caddy.log")).unwrap();
        let child = Command::new(harness::find_program("caddy").expect("caddy is installed"))
            .arg("run")
            .arg("--config")
            .arg(d.join("caddy.json"))
            .env("HOME", d)
            .env("XDG_DATA_HOME", d.join("data"))
            .env("XDG_CONFIG_HOME", d.join("config"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start caddy");
        self.child = Some(child);
        let client = AdminClient::new(self.adapter.settings().admin.clone(), SECS);
        let log = d.join("caddy.log");
        eventually("caddy answers on its admin API", SECS, || {
            let client = client.clone();
            let log = log.clone();
            async move {
                client
                    .request("GET", "/config/", None)
                    .await
                    .map(|_| ())
                    .map_err(|e| {
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

    async fn apply(&self, batch: &Batch) {
        if let Err(e) = self.adapter.apply(batch).await {
            let log =
                std::fs::read_to_string(self.dir.path().join("caddy.log")).unwrap_or_default();
            panic!("apply failed: {e}\ncaddy log:\n{log}");
        }
    }
}

macro_rules! require_caddy {
    () => {
        if !harness::require_program("caddy") {
            return;
        }
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_routes_by_host_and_path() {
    require_caddy!();
    let c = Caddy::start().await;
    let pods = [
        Pod::start("root", "127.1.11.1").await,
        Pod::start("foo-prefix", "127.1.11.2").await,
        Pod::start("foo-exact", "127.1.11.3").await,
        Pod::start("foo-bar", "127.1.11.4").await,
        Pod::start("wild", "127.1.11.5").await,
        Pod::start("vdefault", "127.1.11.6").await,
        Pod::start("catchall", "127.1.11.7").await,
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
    c.apply(&batch).await;

    let cases = [
        ("app.example.com", "/", "root"),
        ("APP.example.com:8080", "/x", "root"),
        ("app.example.com", "/foo", "foo-exact"),
        ("app.example.com", "/FOO", "root"),
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
        assert_eq!(who(c.lb, host, path).await, want, "{host}{path}");
    }

    let mut no_default = routes.clone();
    no_default.default_backend = None;
    c.apply(&Batch {
        epoch: 1,
        routes: Some(no_default.clone()),
        ..Batch::default()
    })
    .await;
    assert_eq!(get(c.lb, "other.test", "/").await.unwrap().0, 404);
    assert_eq!(who(c.lb, "app.example.com", "/foo").await, "foo-exact");

    let state = c.adapter.observe().await.unwrap();
    assert_eq!(state.routes, no_default, "observe reads the routes back");
    let mut applied = batch.upsert_upstreams.clone();
    applied.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(state.upstreams, applied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_serves_host_less_rules_for_unknown_hosts() {
    require_caddy!();
    let lb = Caddy::start().await;
    harness::check_host_less_rules(lb.lb, &lb.adapter, 91).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_scale_out_drain_and_removal() {
    require_caddy!();
    let c = Caddy::start().await;
    let a = Pod::start("a", "127.1.12.1").await;
    let b = Pod::start("b", "127.1.12.2").await;
    c.apply(&Batch {
        epoch: 1,
        upsert_upstreams: vec![upstream("web", vec![a.active(1)])],
        routes: Some(table(
            vec![("web.test", vhost(&[(PathMatch::prefix("/"), "web")], None))],
            None,
        )),
        ..Batch::default()
    })
    .await;
    assert_eq!(who(c.lb, "web.test", "/").await, "a");

    c.apply(&Batch {
        epoch: 1,
        upsert_upstreams: vec![upstream("web", vec![a.active(1), b.active(1)])],
        ..Batch::default()
    })
    .await;
    let seen = spread(c.lb, "web.test", "/", 10).await;
    assert_eq!(
        (seen.get("a"), seen.get("b")),
        (Some(&5), Some(&5)),
        "{seen:?}"
    );

    c.apply(&Batch {
        epoch: 1,
        upsert_upstreams: vec![upstream("web", vec![a.draining(), b.active(1)])],
        ..Batch::default()
    })
    .await;
    let before = a.count();
    let seen = spread(c.lb, "web.test", "/", 20).await;
    assert_eq!(seen.get("b"), Some(&20), "{seen:?}");
    assert_eq!(a.count(), before, "a draining endpoint got a new request");
    let state = c.adapter.observe().await.unwrap();
    assert!(
        state.upstreams[0]
            .endpoints
            .iter()
            .any(|e| e.state == EndpointState::Draining)
    );

    c.apply(&Batch {
        epoch: 1,
        upsert_upstreams: vec![upstream("web", vec![b.active(1)])],
        ..Batch::default()
    })
    .await;
    assert_eq!(
        c.adapter.observe().await.unwrap().upstreams,
        vec![upstream("web", vec![b.active(1)])]
    );

    c.apply(&Batch {
        epoch: 1,
        remove_upstreams: vec![harness::key("web")],
        ..Batch::default()
    })
    .await;
    assert!(c.adapter.observe().await.unwrap().upstreams.is_empty());
    assert_ne!(who(c.lb, "web.test", "/").await, "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_weights_split_traffic() {
    require_caddy!();
    let c = Caddy::start().await;
    let a = Pod::start("a", "127.1.13.1").await;
    let b = Pod::start("b", "127.1.13.2").await;
    c.apply(&Batch {
        epoch: 1,
        upsert_upstreams: vec![upstream("web", vec![a.active(750), b.active(250)])],
        routes: Some(table(vec![], Some("web"))),
        ..Batch::default()
    })
    .await;
    let cfg = AdminClient::new(AdminAddr::Tcp(c.admin), SECS)
        .request("GET", "/config/", None)
        .await
        .unwrap();
    eprintln!("DEBUGCFG {}", String::from_utf8_lossy(&cfg));
    let seen = spread(c.lb, "any.test", "/", 200).await;
    let share_a = seen.get("a").copied().unwrap_or(0);
    assert!(
        (140..=160).contains(&share_a),
        "expected ~150 of 200 on a: {seen:?}"
    );
    let weights: Vec<u32> = c.adapter.observe().await.unwrap().upstreams[0]
        .endpoints
        .iter()
        .map(|e| e.weight)
        .collect();
    assert_eq!(weights, vec![750, 250]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_restart_is_seen_and_resynced() {
    require_caddy!();
    let mut c = Caddy::start().await;
    let a = Pod::start("a", "127.1.14.1").await;
    let full = Batch {
        epoch: 1,
        upsert_upstreams: vec![upstream("web", vec![a.active(1)])],
        routes: Some(table(
            vec![("web.test", vhost(&[(PathMatch::prefix("/"), "web")], None))],
            None,
        )),
        ..Batch::default()
    };
    c.apply(&full).await;
    assert_eq!(who(c.lb, "web.test", "/").await, "a");
    let before = c.adapter.observe().await.unwrap();
    assert!(!before.instance.is_empty());

    c.kill();
    assert!(c.adapter.observe().await.unwrap_err().is_retryable());
    c.launch().await;
    let after = c.adapter.observe().await.unwrap();
    assert_ne!(
        after.instance, before.instance,
        "a restarted Caddy is a new instance"
    );
    assert!(after.upstreams.is_empty() && after.routes.hosts.is_empty());
    assert!(
        get(c.lb, "web.test", "/").await.is_err(),
        "nothing listens before the resync"
    );

    c.apply(&full).await;
    assert_eq!(who(c.lb, "web.test", "/").await, "a");
    let resynced = c.adapter.observe().await.unwrap();
    assert_eq!(resynced.upstreams, full.upsert_upstreams);
    assert_eq!(Some(resynced.routes), full.routes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_one_dead_instance_does_not_stop_the_other() {
    require_caddy!();
    let mut one = Caddy::start().await;
    let two = Caddy::start_unix().await;
    let a = Pod::start("a", "127.1.15.1").await;
    let b = Pod::start("b", "127.1.15.2").await;
    let first = Batch {
        epoch: 1,
        upsert_upstreams: vec![upstream("web", vec![a.active(1)])],
        routes: Some(table(vec![], Some("web"))),
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

    one.launch().await;
    one.apply(&second).await; // the adapter renders its whole mirror: a full resync
    assert_eq!(who(one.lb, "x.test", "/").await, "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_keeps_foreign_config_and_fences_old_epochs() {
    require_caddy!();
    let c = Caddy::start().await;
    let admin = AdminClient::new(AdminAddr::Tcp(c.admin), SECS);
    let other = free_addr();
    let foreign = format!(
        r#"{{"other":{{"listen":["{other}"],"routes":[{{"handle":[{{"handler":"static_response","body":"theirs"}}]}}]}}}}"#
    );
    admin
        .request(
            "POST",
            "/config/apps",
            Some(format!(r#"{{"http":{{"servers":{foreign}}}}}"#).into_bytes()),
        )
        .await
        .unwrap();
    let a = Pod::start("a", "127.1.16.1").await;
    c.apply(&Batch {
        epoch: 5,
        upsert_upstreams: vec![upstream("web", vec![a.active(1)])],
        routes: Some(table(vec![], Some("web"))),
        ..Batch::default()
    })
    .await;
    assert_eq!(who(c.lb, "x.test", "/").await, "a");
    assert_eq!(
        who(other, "x.test", "/").await,
        "theirs",
        "the operator's server survives"
    );
    let err = c
        .adapter
        .apply(&Batch {
            epoch: 4,
            ..Batch::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, podgate::lb::LbError::Fenced(5)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_removed_endpoint_finishes_in_flight_requests() {
    require_caddy!();
    let c = Caddy::start().await;
    let a = Pod::start("a", "127.1.17.1").await;
    let b = Pod::start("b", "127.1.17.2").await;
    c.apply(&Batch {
        epoch: 1,
        upsert_upstreams: vec![upstream("web", vec![a.active(1)])],
        routes: Some(table(vec![], Some("web"))),
        ..Batch::default()
    })
    .await;
    let lb = c.lb;
    let slow = tokio::spawn(async move { who(lb, "x.test", "/slow").await });
    eventually("the slow request reached a", SECS, || async {
        if a.count() == 1 {
            Ok(())
        } else {
            Err(format!("a served {}", a.count()))
        }
    })
    .await;
    // Draining, then gone, while the request is in flight: Caddy swaps its config
    // gracefully, so the request still finishes on a.
    c.apply(&Batch {
        epoch: 1,
        upsert_upstreams: vec![upstream("web", vec![a.draining(), b.active(1)])],
        ..Batch::default()
    })
    .await;
    c.apply(&Batch {
        epoch: 1,
        upsert_upstreams: vec![upstream("web", vec![b.active(1)])],
        ..Batch::default()
    })
    .await;
    assert_eq!(who(c.lb, "x.test", "/").await, "b");
    assert_eq!(
        slow.await.unwrap(),
        "a",
        "the in-flight request finished on a"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_full_resync_of_an_lb_in_sync_posts_nothing() {
    require_caddy!();
    let c = Caddy::start().await;
    let a = Pod::start("a", "127.1.19.1").await;
    let b = Pod::start("b", "127.1.19.2").await;
    let full = Batch {
        epoch: 7,
        upsert_upstreams: vec![upstream("web", vec![a.active(3), b.active(1)])],
        routes: Some(table(
            vec![("web.test", vhost(&[(PathMatch::prefix("/"), "web")], None))],
            None,
        )),
        ..Batch::default()
    };
    c.apply(&full).await;
    let client = AdminClient::new(c.adapter.settings().admin.clone(), SECS);
    // Every POST carries a new generation in podgate-meta, so an unchanged server
    // means nothing was posted (and Caddy re-provisioned nothing).
    let live = async || -> serde_json::Value {
        let body = client
            .request("GET", "/id/podgate-server", None)
            .await
            .unwrap();
        serde_json::from_slice(&body).unwrap()
    };
    let before = live().await;

    c.apply(&full).await;
    assert_eq!(live().await, before, "same adapter, same state");
    let fresh = CaddyAdapter::new("caddy/fresh".into(), c.adapter.settings().clone()).unwrap();
    let summary = fresh.apply(&full).await.unwrap();
    assert_eq!(live().await, before, "new adapter, same epoch, same state");
    assert_eq!(
        summary,
        c.adapter
            .observe()
            .await
            .map(|s| podgate_core::model::StateSummary {
                instance: s.instance,
                generation: s.generation,
                epoch: s.epoch,
            })
            .unwrap()
    );

    // A real change is posted.
    let mut changed = full.clone();
    changed.upsert_upstreams = vec![upstream("web", vec![a.active(1)])];
    fresh.apply(&changed).await.unwrap();
    assert_ne!(live().await, before);
    eventually("the change is served", SECS, || async {
        let s = spread(c.lb, "web.test", "/", 10).await;
        (s.len() == 1 && s.contains_key("a"))
            .then_some(())
            .ok_or_else(|| format!("{s:?}"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_applies_patches_to_what_it_holds() {
    require_caddy!();
    let lb = Caddy::start().await;
    harness::check_patches(lb.lb, &lb.adapter, 93).await;
}
