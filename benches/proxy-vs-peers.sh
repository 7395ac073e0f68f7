#!/usr/bin/env bash
# podgate proxy vs nginx vs HAProxy, configured the same way, measured with wrk.
#
#   benches/proxy-vs-peers.sh [seconds-per-run] [connections] [--churn]
#
# Setup (identical for the three): 4 backends on loopback (127.1.0.1-4, an nginx
# instance answering 1 KiB), keep-alive to clients and to upstreams, routing by Host,
# power-of-two-choices on in-flight/least-connections (podgate P2C, nginx
# `random two least_conn`, HAProxy `balance random(2)`), X-Forwarded-For added, one
# worker each (podgate --workers 1 = current_thread runtime, nginx worker_processes 1,
# HAProxy nbthread 1), every proxy pinned to CPU $PROXY_CPU, wrk and the backends
# pinned to CPU $LOAD_CPU. Plain HTTP and HTTPS (TLS 1.3, ECDSA P-256, keep-alive).
# Besides req/s and latency the script reports the proxy's own CPU time per request
# (from /proc), which stays meaningful when the load side is the bottleneck.
#
# --churn also runs (b): while wrk runs against podgate, 1,000 endpoint changes per
# second go through the admin API; p99 and non-2xx are compared with the idle run.
#
# OBSERVE=off (default) runs podgate without per-upstream metrics
# (`limits.metrics_upstreams: 0`) and all three without access logs; OBSERVE=metrics
# turns podgate's per-upstream metrics on (no access logs); OBSERVE=on runs
# podgate with per-upstream metrics and a JSON access log to a file, nginx with its
# default access log to a file, HAProxy with `option httplog` to a file (stdout).
# BALANCE=rr gives the peers their default round-robin balancing instead of
# `random two least_conn` / `random(2)` (podgate stays power of two choices).
# SYSCALLS=1 also counts each proxy's system calls per request (perf stat
# raw_syscalls:sys_enter while wrk runs; the counting costs all three alike).
# PROXY_QUOTA=50 caps each proxy at that percentage of one core (a cgroup v1 `cpu`
# quota per proxy, needs root), so that the proxy and not the load side is the
# bottleneck and req/s compares the proxies' efficiency under the same CPU budget.
#
# Needs: wrk nginx haproxy openssl curl python3 (apt-get install wrk nginx haproxy), and
# `cargo build --release`. Results go to stdout as a markdown table.
set -euo pipefail

DUR=${1:-10}
CONNS=${2:-50}
CHURN=${3:-}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
SCHEMES=${SCHEMES:-"http https"}
OBSERVE=${OBSERVE:-off}
BALANCE=${BALANCE:-p2c}
SYSCALLS=${SYSCALLS:-}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PODGATE=${PODGATE:-$ROOT/target/release/podgate}
WORK=$(mktemp -d)
PIDS=()
CGROUPS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    for g in "${CGROUPS[@]}"; do rmdir "$g" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

case $OBSERVE in on|off|metrics) ;; *) echo "OBSERVE must be off, metrics or on" >&2; exit 2 ;; esac
case $BALANCE in p2c|rr) ;; *) echo "BALANCE must be p2c or rr" >&2; exit 2 ;; esac
if [ "$OBSERVE" = on ]; then
    NGINX_LOG="access_log $WORK/nginx-access.log;"
    HAPROXY_LOG="log stdout format raw local0"
    HAPROXY_HTTPLOG=$'log global\n    option httplog'
    PODGATE_OBSERVE="access_log: {to: file, path: $WORK/podgate-access.log, format: json}"
else
    NGINX_LOG="access_log off;"
    HAPROXY_LOG="" HAPROXY_HTTPLOG=""
    PODGATE_OBSERVE="limits: {metrics_upstreams: 0}"
    # metrics: podgate's per-upstream metrics on (its default), no access log anywhere.
    [ "$OBSERVE" = metrics ] && PODGATE_OBSERVE=""
fi
if [ "$BALANCE" = rr ]; then
    NGINX_BALANCE="" HAPROXY_BALANCE="balance roundrobin"
else
    NGINX_BALANCE="random two least_conn;" HAPROXY_BALANCE="balance random(2)"
fi

HOST=bench.example.com
BACKEND_PORT=18081
P_HTTP=18080 P_HTTPS=18443 P_ADMIN=18901
N_HTTP=18090 N_HTTPS=18453
H_HTTP=18100 H_HTTPS=18463

# --- certificate for all three ---------------------------------------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=$HOST" -addext "subjectAltName=DNS:$HOST" \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
cat "$WORK/cert.pem" "$WORK/key.pem" > "$WORK/haproxy.pem"

# --- backends: 4 loopback addresses answering 1 KiB --------------------------------------
ONE_KIB=$(head -c 1024 /dev/zero | tr '\0' 'x')
mkdir -p "$WORK/backend" "$WORK/nginx"
cat > "$WORK/backend/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/backend/nginx.pid;
error_log $WORK/backend/error.log error;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    server {
        listen 127.1.0.1:$BACKEND_PORT; listen 127.1.0.2:$BACKEND_PORT;
        listen 127.1.0.3:$BACKEND_PORT; listen 127.1.0.4:$BACKEND_PORT;
        location / { default_type text/plain; return 200 "$ONE_KIB"; }
    }
}
CONF
taskset -c "$LOAD_CPU" nginx -c "$WORK/backend/nginx.conf" -p "$WORK/backend" &
PIDS+=($!)

# --- nginx as the proxy ----------------------------------------------------------------
cat > "$WORK/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log error;
events { worker_connections 4096; }
http {
    $NGINX_LOG
    keepalive_requests 1000000;
    upstream web {
        $NGINX_BALANCE
        server 127.1.0.1:$BACKEND_PORT; server 127.1.0.2:$BACKEND_PORT;
        server 127.1.0.3:$BACKEND_PORT; server 127.1.0.4:$BACKEND_PORT;
        keepalive 128;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$N_HTTP;
        listen 127.0.0.1:$N_HTTPS ssl;
        http2 on;
        server_name $HOST;
        ssl_certificate $WORK/cert.pem;
        ssl_certificate_key $WORK/key.pem;
        ssl_protocols TLSv1.3;
        location / {
            proxy_pass http://web;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$host;
        }
    }
    server { listen 127.0.0.1:$N_HTTP default_server; return 404; }
}
CONF
# nginx 1.22 does not know "http2 on": fall back to the listen flag.
if ! nginx -t -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" >/dev/null 2>&1; then
    sed -i -e '/http2 on;/d' -e "s/listen 127.0.0.1:$N_HTTPS ssl;/listen 127.0.0.1:$N_HTTPS ssl http2;/" "$WORK/nginx/nginx.conf"
fi
taskset -c "$PROXY_CPU" nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" &
PIDS+=($!)
NGINX_PID=$!

# --- HAProxy ---------------------------------------------------------------------------
cat > "$WORK/haproxy.cfg" <<CONF
global
    nbthread 1
    maxconn 4000
    $HAPROXY_LOG
    ssl-default-bind-options ssl-min-ver TLSv1.3
defaults
    mode http
    $HAPROXY_HTTPLOG
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    option http-keep-alive
    http-reuse always
frontend fe
    bind 127.0.0.1:$H_HTTP
    bind 127.0.0.1:$H_HTTPS ssl crt $WORK/haproxy.pem alpn h2,http/1.1
    option forwardfor
    http-request set-header X-Forwarded-Proto https if { ssl_fc }
    http-request set-header X-Forwarded-Proto http if !{ ssl_fc }
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    use_backend web if { req.hdr(host),field(1,:) -i $HOST }
backend web
    $HAPROXY_BALANCE
    server b1 127.1.0.1:$BACKEND_PORT
    server b2 127.1.0.2:$BACKEND_PORT
    server b3 127.1.0.3:$BACKEND_PORT
    server b4 127.1.0.4:$BACKEND_PORT
CONF
taskset -c "$PROXY_CPU" haproxy -db -f "$WORK/haproxy.cfg" > "$WORK/haproxy-access.log" &
PIDS+=($!)
HAPROXY_PID=$!

# --- podgate ---------------------------------------------------------------------------
echo -n "bench-token" > "$WORK/lb.token"
cat > "$WORK/proxy.yaml" <<CONF
listen: 127.0.0.1:$P_HTTP
tls_listen: 127.0.0.1:$P_HTTPS
tls_default_certificate: bench/tls
admin:
  listen: 127.0.0.1:$P_ADMIN
  token_file: $WORK/lb.token
$PODGATE_OBSERVE
CONF
RUST_LOG=warn,rustls=error taskset -c "$PROXY_CPU" "$PODGATE" proxy -c "$WORK/proxy.yaml" --workers 1 &
PIDS+=($!)
PODGATE_PID=$!

wait_for() { for _ in $(seq 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }
wait_for "http://127.0.0.1:$P_ADMIN/healthz"
wait_for "http://127.1.0.1:$BACKEND_PORT/"

python3 - "$WORK" <<'PY' > "$WORK/batch.json"
import json, sys
work = sys.argv[1]
key = {"namespace": "bench", "service": "web", "port": 80}
eps = [{"cluster": "local", "address": f"127.1.0.{i}", "port": 18081,
        "state": "active", "weight": 250} for i in range(1, 5)]
print(json.dumps({
    "epoch": 1,
    "upsert_upstreams": [{"key": key, "shares": [["local", 1000]], "endpoints": eps}],
    "routes": {"hosts": {"bench.example.com": {
        "routes": [{"path": {"kind": "Prefix", "path": ""}, "upstream": key}],
        "tls": "bench/tls"}}},
    "upsert_certificates": [{"id": "bench/tls",
        "cert_pem": open(f"{work}/cert.pem").read(),
        "key_pem": open(f"{work}/key.pem").read()}],
}))
PY
curl -sf -H "Authorization: Bearer bench-token" --data-binary @"$WORK/batch.json" \
    "http://127.0.0.1:$P_ADMIN/v1/batch" > /dev/null

for url in "http://127.0.0.1:$P_HTTP/" "http://127.0.0.1:$N_HTTP/" "http://127.0.0.1:$H_HTTP/"; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $HOST" "$url")
    [ "$code" = 200 ] || { echo "$url answered $code" >&2; exit 1; }
done

# utime,stime of a process, in clock ticks.
cpu_ticks() { awk '{print $14 "," $15}' "/proc/$1/stat"; }

# run NAME PID URL -> "rps p50 p99 non2xx cpu_us_per_req user_us_per_req sys_us_per_req syscalls_per_req"
run() {
    local pid=$2 url=$3 before after out perf_out=$WORK/syscalls-$1.txt counter=""
    before=$(cpu_ticks "$pid")
    if [ -n "$SYSCALLS" ]; then
        perf stat -x, -e raw_syscalls:sys_enter -p "$pid" -o "$perf_out" -- sleep "$DUR" &
        counter=$!
    fi
    out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DUR}s" --latency \
        -H "Host: $HOST" "$url" 2>&1)
    after=$(cpu_ticks "$pid")
    syscalls=nan
    if [ -n "$counter" ]; then
        wait "$counter" || true
        syscalls=$(awk -F, '/raw_syscalls/ {print $1}' "$perf_out")
    fi
    echo "$out" > "$WORK/wrk-$1.txt"
    python3 - "$out" "$before" "$after" "$(getconf CLK_TCK)" "${syscalls:-nan}" <<'PY'
import re, sys
out, hz = sys.argv[1], int(sys.argv[4])
syscalls = float(sys.argv[5]) if sys.argv[5] not in ("", "nan") else float("nan")
(ub, sb), (ua, sa) = (map(int, sys.argv[i].split(",")) for i in (2, 3))
def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", v)
    if not m:
        print(f"# cannot read latency {v!r} in:\n{out}", file=sys.stderr)
        return float("nan")
    n, unit = m.groups()
    return float(n) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
total = int(re.search(r"(\d+) requests in", out).group(1))
# Anchored: "Req/Sec ... 92.50%" must not be read as the 50th percentile.
p50 = ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
bad = int(m.group(1)) if m else 0
m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
if m:
    bad += sum(int(x) for x in m.groups())
per_req = lambda ticks: ticks / hz * 1e6 / max(total, 1)
user_us, sys_us = per_req(ua - ub), per_req(sa - sb)
print(f"{rps:.0f} {p50:.3f} {p99:.3f} {bad} {user_us + sys_us:.1f} {user_us:.1f} {sys_us:.1f} {syscalls / max(total, 1):.2f}")
PY
}

# PROXY_QUOTA: each proxy (all its processes and threads) in a cgroup of its own.
if [ -n "${PROXY_QUOTA:-}" ]; then
    cap() {
        local g=/sys/fs/cgroup/cpu/proxy-bench-$1-$$
        mkdir "$g"
        CGROUPS+=("$g")
        echo $((PROXY_QUOTA * 1000)) > "$g/cpu.cfs_quota_us"
        echo 100000 > "$g/cpu.cfs_period_us"
        shift
        for pid in "$@"; do echo "$pid" > "$g/cgroup.procs"; done
    }
    cap podgate "$PODGATE_PID"
    cap nginx "$NGINX_PID" $(pgrep -P "$NGINX_PID")
    cap haproxy "$HAPROXY_PID"
fi

ROUNDS=${ROUNDS:-3}
echo "# $(date -u +%FT%TZ) $(uname -m) $(nproc) CPUs; ${DUR}s per run, $CONNS connections, wrk -t1"
echo "# proxy CPU $PROXY_CPU, wrk + backends CPU $LOAD_CPU; $ROUNDS interleaved rounds, median of each metric"
echo "# OBSERVE=$OBSERVE (metrics and access logs), BALANCE=$BALANCE (the peers' balancing)${PROXY_QUOTA:+, each proxy capped at $PROXY_QUOTA % of a core}"
echo
# Rounds interleave the three proxies so that noise from other work on the machine hits
# them alike; the median of each metric is reported.
: > "$WORK/results"
for round in $(seq "$ROUNDS"); do
    for scheme in $SCHEMES; do
        for name in podgate nginx haproxy; do
            case $name in
                podgate) pid=$PODGATE_PID; port=$([ $scheme = http ] && echo $P_HTTP || echo $P_HTTPS) ;;
                nginx) pid=$(pgrep -P "$NGINX_PID" | head -1 || echo "$NGINX_PID")
                       [ -n "$pid" ] || pid=$NGINX_PID
                       port=$([ $scheme = http ] && echo $N_HTTP || echo $N_HTTPS) ;;
                haproxy) pid=$HAPROXY_PID
                       port=$([ $scheme = http ] && echo $H_HTTP || echo $H_HTTPS) ;;
            esac
            taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d1s -H "Host: $HOST" "$scheme://127.0.0.1:$port/" >/dev/null 2>&1
            if [ -n "${PROFILE:-}" ] && [ "$name" = podgate ] && [ "$round" = 1 ]; then
                # PROFILE=1: perf profile of podgate during the first round, kept in /tmp.
                perf record -F 999 -g -p "$pid" -o "$WORK/perf.data" -- sleep "$DUR" >/dev/null 2>&1 &
                perf_pid=$!
            fi
            res=$(run "$name-$scheme" "$pid" "$scheme://127.0.0.1:$port/")
            if [ -n "${perf_pid:-}" ]; then
                wait "$perf_pid" || true
                perf report -i "$WORK/perf.data" --no-children --percent-limit 0.7 --stdio \
                    > "/tmp/podgate-perf-$scheme.txt" 2>/dev/null || true
                cp "$WORK/perf.data" "/tmp/podgate-perf-$scheme.data" 2>/dev/null || true
                unset perf_pid
            fi
            echo "$scheme $name $res" >> "$WORK/results"
            echo "# round $round $scheme $name: $res" >&2
        done
    done
done
if [ "$OBSERVE" = on ]; then
    # Proof that the logs were on: lines each proxy wrote.
    echo "# access log lines: podgate $(wc -l < "$WORK/podgate-access.log"), nginx $(wc -l < "$WORK/nginx-access.log"), haproxy $(wc -l < "$WORK/haproxy-access.log")"
    echo "# podgate line: $(tail -1 "$WORK/podgate-access.log")"
    echo
fi
python3 - "$WORK/results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    scheme, name, *vals = line.split()
    rows.setdefault((scheme, name), []).append(list(map(float, vals)))
med = {k: [statistics.median(col) for col in zip(*v)] for k, v in rows.items()}
print("| scheme | proxy | req/s | p50 ms | p99 ms | errors | proxy CPU µs/req | of which user / kernel | syscalls/req |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
schemes = sorted({s for s, _ in med}, reverse=True)
for s in schemes:
    for n in ("podgate", "nginx", "haproxy"):
        rps, p50, p99, bad, cpu, user, kernel, calls = med[(s, n)]
        print(f"| {s} | {n} | {rps:.0f} | {p50:.3f} | {p99:.3f} | {bad:.0f} | {cpu:.1f} | {user:.1f} / {kernel:.1f} | {calls:.2f} |")
print()
print("| scheme | req/s podgate/nginx | req/s podgate/HAProxy | p99 podgate/nginx | p99 podgate/HAProxy | CPU/req podgate/nginx | CPU/req podgate/HAProxy |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
r = lambda a, b: f"{a / b:.2f}" if b else "n/a"
for s in schemes:
    p, n, h = med[(s, "podgate")], med[(s, "nginx")], med[(s, "haproxy")]
    print(f"| {s} | {r(p[0], n[0])} | {r(p[0], h[0])} | {r(p[2], n[2])} | {r(p[2], h[2])} | {r(p[4], n[4])} | {r(p[4], h[4])} |")
PY
if [ "$CHURN" = "--churn" ]; then
    echo
    echo "## route churn: 1,000 endpoint changes/s through the admin API during wrk (podgate, http)"
    # The idle reference is measured right before the churn run, not taken from the
    # rounds above, so that both see the same machine.
    idle=$(run podgate-idle "$PODGATE_PID" "http://127.0.0.1:$P_HTTP/")
    # The churn client is load like wrk: it runs on the load CPU.
    taskset -c "$LOAD_CPU" python3 - "$P_ADMIN" "$DUR" <<'PY' &
import json, socket, sys, time
port, dur = int(sys.argv[1]), float(sys.argv[2])
key = {"namespace": "bench", "service": "web", "port": 80}
def batch(i):
    # Endpoint 4 alternates between active and draining; the others stay.
    eps = [{"cluster": "local", "address": f"127.1.0.{j}", "port": 18081,
            "state": "draining" if (j == 4 and i % 2) else "active", "weight": 250}
           for j in range(1, 5)]
    body = json.dumps({"epoch": 1, "upsert_upstreams": [
        {"key": key, "shares": [["local", 1000]], "endpoints": eps}]}).encode()
    return (b"POST /v1/batch HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer bench-token\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
# Two prepared requests and a raw keep-alive socket: the churn client is load on the
# load CPU, so it should cost as little as possible there.
requests = [batch(0), batch(1)]
conn = socket.create_connection(("127.0.0.1", port))
conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
pending = b""
def answer():
    global pending
    while b"\r\n\r\n" not in pending:
        pending += conn.recv(65536)
    head, _, rest = pending.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next(int(l.split(b":")[1]) for l in head.split(b"\r\n")
                  if l.lower().startswith(b"content-length:"))
    while len(rest) < length:
        rest += conn.recv(65536)
    pending = rest[length:]
    return status
start, i, worst = time.monotonic(), 0, 0.0
while time.monotonic() - start < dur + 1:
    t0 = time.monotonic()
    conn.sendall(requests[i % 2])
    status = answer()
    assert status == 200, status
    worst = max(worst, time.monotonic() - t0)
    i += 1
    # 1,000 per second: wait for the next slot.
    delay = start + i / 1000 - time.monotonic()
    if delay > 0:
        time.sleep(delay)
rate = i / (time.monotonic() - start)
print(f"# churn: {i} changes, {rate:.0f}/s, slowest admin call {worst * 1000:.2f} ms", file=sys.stderr)
PY
    churn_pid=$!
    sleep 0.5
    res=$(run podgate-churn "$PODGATE_PID" "http://127.0.0.1:$P_HTTP/")
    wait $churn_pid
    read -r rps p50 p99 bad cpu _ <<<"$res"
    read -r irps ip50 ip99 ibad icpu _ <<<"$idle"
    echo "| run | req/s | p50 ms | p99 ms | non-2xx + socket errors | proxy CPU µs/req |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: |"
    echo "| idle | $irps | $ip50 | $ip99 | $ibad | $icpu |"
    echo "| churn | $rps | $p50 | $p99 | $bad | $cpu |"
    python3 -c "print(f'p99 churn/idle: {$p99 / $ip99:.2f}')"
fi
