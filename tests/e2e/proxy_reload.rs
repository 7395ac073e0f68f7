//! `podgate proxy` replaced by a new process under load (SIGHUP, as `systemctl reload`
//! sends it): the new process takes over the listening sockets and serves from its
//! first request, the old one finishes what it has in flight and exits; not one
//! request fails, idle keep-alive clients see a clean close, and the controller keeps
//! the new process in sync.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::proxy_process::{
    HOST, Load, TOKEN, WAIT, endpoints, lab_with_process, load_with, scale_out_idc,
    summary_instance,
};

/// Sends SIGHUP (or another signal) to `pid`.
fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} {pid}");
}

/// Kills a process this test did not start itself (the successor) when dropped.
struct Reaper(u32);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &self.0.to_string()])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_replaced_by_a_new_process_under_load_drops_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (lab, mut proxy, mut idc, tke) = lab_with_process(dir.path()).await;
    let before = summary_instance(proxy.admin, TOKEN).await;

    // Idle keep-alive clients: one answered request each, then silence.
    let mut idle = Vec::new();
    for _ in 0..8 {
        let mut conn = tokio::net::TcpStream::connect(proxy.http).await.unwrap();
        conn.write_all(format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = conn.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        idle.push(conn);
    }
    // Busy clients: keep-alive ones and ones that open a connection per request.
    let counts = Arc::new(Load::default());
    let clients: Vec<_> = (0..6)
        .map(|i| load_with(proxy.http, Arc::clone(&counts), i % 2 == 0))
        .collect();
    lab.eventually("load is served", WAIT, || async {
        (counts.ok.load(Ordering::Relaxed) > 200).then_some(())
    })
    .await
    .unwrap();

    let old = proxy.child.id().unwrap();
    signal(old, "HUP");
    let successor = tokio::time::timeout(WAIT, async {
        while let Some(line) = proxy.logs.recv().await {
            if line["fields"]["message"] == "handed over: draining" {
                return line["fields"]["successor"].as_u64().unwrap();
            }
        }
        panic!("the proxy's log ended before the handover");
    })
    .await
    .expect("the proxy hands over");
    let successor = u32::try_from(successor).unwrap();
    let _reaper = Reaper(successor);
    assert_ne!(successor, old);
    let exited = tokio::time::timeout(WAIT, proxy.child.wait())
        .await
        .expect("the old process exits after draining")
        .unwrap();
    assert!(exited.success(), "{exited}");
    let served_by_old = counts.ok.load(Ordering::Relaxed);
    lab.eventually("the new process serves the load", WAIT, || async {
        (counts.ok.load(Ordering::Relaxed) > served_by_old + 500).then_some(())
    })
    .await
    .unwrap();

    // The idle clients were closed cleanly (FIN, not RST), by the old process.
    for conn in &mut idle {
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
            .await
            .expect("an idle connection is closed");
        assert!(matches!(read, Ok(0)), "{read:?}");
    }

    // The new process is another instance on the same sockets, and the controller
    // drives it: a pod scaled out reaches it.
    let after = summary_instance(proxy.admin, TOKEN).await;
    assert_ne!(after, before, "a new process is a new instance");
    let now_all = scale_out_idc(&lab, &mut idc, &tke).await;
    lab.eventually("the new process gets the new pod", WAIT, || async {
        (endpoints(proxy.admin, TOKEN).await? == now_all).then_some(())
    })
    .await
    .unwrap();

    counts.stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let (ok, not_found, other, unreachable) = (
        counts.ok.load(Ordering::Relaxed),
        counts.not_found.load(Ordering::Relaxed),
        counts.other.load(Ordering::Relaxed),
        counts.unreachable.load(Ordering::Relaxed),
    );
    assert_eq!(
        (not_found, other, unreachable),
        (0, 0, 0),
        "{ok} requests answered 200; errors: {:?}",
        counts.errors.lock().unwrap()
    );
}

/// A successor that cannot start (here: the configuration broke meanwhile) changes
/// nothing: the running proxy says why and keeps serving on its sockets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_that_cannot_start_leaves_the_running_proxy_serving() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("lb.token"), TOKEN).unwrap();
    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let mut proxy = crate::proxy_process::spawn(dir.path(), any, any).await;
    std::fs::write(
        dir.path().join("proxy.yaml"),
        "listen: [not, an, address]\n",
    )
    .unwrap();
    signal(proxy.child.id().unwrap(), "HUP");
    let failed = tokio::time::timeout(WAIT, async {
        while let Some(line) = proxy.logs.recv().await {
            if line["fields"]["message"] == "handover failed: still serving" {
                return line["fields"]["error"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
            }
        }
        panic!("the proxy's log ended");
    })
    .await
    .expect("the failed handover is reported");
    assert!(failed.contains("exited before it was ready"), "{failed}");
    assert!(
        proxy.child.try_wait().unwrap().is_none(),
        "the proxy stopped"
    );
    let health = reqwest::get(format!("http://{}/healthz", proxy.admin))
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    assert!(summary_instance(proxy.admin, TOKEN).await.len() > 4);
}
