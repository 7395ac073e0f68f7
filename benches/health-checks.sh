#!/usr/bin/env bash
# Active health checks at scale: the built-in proxy checks N endpoints (default 10,000)
# of one upstream every INTERVAL (default 5s); what does checking cost it?
#
#   benches/health-checks.sh [endpoints] [interval] [seconds]
#
# The endpoints are N/4 ports on each of 127.1.0.1-4, one nginx per address (each
# address:port its own endpoint, as a pod would be), answering /healthz with 200. The proxy (--workers 1, pinned to CPU
# $PROXY_CPU) gets the upstream once without a health check and once with one; for
# each, its CPU time over `seconds` idle (no traffic) is read from /proc, and wrk
# measures req/s through it (pinned to $LOAD_CPU with nginx), so the request-path
# overhead of checking shows as a ratio. Loopback only; stops by itself.
#
# Needs: nginx wrk curl python3, `cargo build --release`.
set -euo pipefail

N=${1:-10000}
INTERVAL=${2:-5s}
SECS=${3:-20}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PODGATE=${PODGATE:-$ROOT/target/release/podgate}
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

FIRST_PORT=20000
P_HTTP=18180 P_ADMIN=18981 HOST=hc.example.com

# --- four nginx, N/4 ports each -------------------------------------------------------
PER=$((N / 4))
for ip in 1 2 3 4; do
    python3 - "$WORK" "$PER" "$FIRST_PORT" "$ip" <<'PY'
import sys
work, n, first, ip = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
listens = "\n".join(f"        listen 127.1.0.{ip}:{first + i};" for i in range(n))
open(f"{work}/nginx-{ip}.conf", "w").write(f"""worker_processes 1;
daemon off;
pid {work}/nginx-{ip}.pid;
error_log {work}/error-{ip}.log error;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    server {{
{listens}
        location / {{ default_type text/plain; return 200 "ok"; }}
    }}
}}
""")
PY
    taskset -c "$LOAD_CPU" nginx -c "$WORK/nginx-$ip.conf" -p "$WORK" &
    PIDS+=($!)
done

echo -n "bench-token" > "$WORK/lb.token"
cat > "$WORK/proxy.yaml" <<CONF
listen: 127.0.0.1:$P_HTTP
admin:
  listen: 127.0.0.1:$P_ADMIN
  token_file: $WORK/lb.token
limits: {max_connections: 20000}
CONF
RUST_LOG=warn taskset -c "$PROXY_CPU" "$PODGATE" proxy -c "$WORK/proxy.yaml" --workers 1 &
PODGATE_PID=$!
PIDS+=($PODGATE_PID)
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$P_ADMIN/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done
for _ in $(seq 100); do
    curl -sf "http://127.1.0.4:$((FIRST_PORT + PER - 1))/" >/dev/null 2>&1 && break
    sleep 0.1
done

# push UPSTREAM-JSON-WITH-OR-WITHOUT-CHECK
push() {
    python3 - "$PER" "$FIRST_PORT" "$HOST" "$1" "$INTERVAL" > "$WORK/batch.json" <<'PY'
import json, sys
per, first, host, checked, interval = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1", sys.argv[5]
key = {"namespace": "bench", "service": "web", "port": 80}
ms = int(interval[:-2]) if interval.endswith("ms") else int(float(interval[:-1]) * 1000)
up = {"key": key, "shares": [], "endpoints": [
    {"cluster": "local", "address": f"127.1.0.{ip}", "port": first + i, "state": "active", "weight": 1}
    for ip in range(1, 5) for i in range(per)]}
if checked:
    up["health_check"] = {"method": "GET", "path": "/healthz", "interval_ms": ms,
                          "timeout_ms": min(1000, ms // 2), "healthy_threshold": 2,
                          "unhealthy_threshold": 3}
print(json.dumps({"epoch": 1, "upsert_upstreams": [up],
                  "routes": {"hosts": {host: {"routes": [{"path": {"kind": "Prefix", "path": "/"},
                                                          "upstream": key}]}}}}))
PY
    curl -sS --fail-with-body -H "Authorization: Bearer bench-token" \
        --data-binary @"$WORK/batch.json" "http://127.0.0.1:$P_ADMIN/v1/batch" >/dev/null
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# measure LABEL -> "cpu_ms_per_s req_s"
measure() {
    sleep 2 # the first checks spread over the first interval
    local before after rps
    before=$(cpu_ticks "$PODGATE_PID")
    sleep "$SECS"
    after=$(cpu_ticks "$PODGATE_PID")
    rps=$(taskset -c "$LOAD_CPU" wrk -t1 -c64 -d5s -H "Host: $HOST" "http://127.0.0.1:$P_HTTP/" |
        awk '/Requests\/sec/ {print $2}')
    python3 -c "import sys; hz=$(getconf CLK_TCK); print(f'{($after-$before)/hz*1000/$SECS:.1f} {float(sys.argv[1]):.0f}')" "$rps"
}

echo "# $(date -u +%FT%TZ) $(nproc) CPUs; $N endpoints, check every $INTERVAL, ${SECS}s idle per run"
push 0
read -r idle_cpu plain_rps < <(measure)
push 1
read -r check_cpu check_rps < <(measure)
checks_per_s=$(python3 -c "
i='$INTERVAL'; ms = int(i[:-2]) if i.endswith('ms') else float(i[:-1]) * 1000
print(f'{$N / ms * 1000:.0f}')")
unhealthy=$(curl -sf -H "Authorization: Bearer bench-token" \
    "http://127.0.0.1:$P_ADMIN/v1/upstreams/bench/web/80" | { grep -o '"unhealthy":true' || true; } | wc -l)
echo
echo "| run | proxy CPU while idle (ms per s) | checks/s | CPU per check (µs) | req/s through it (wrk, 64 conns) |"
echo "| --- | ---: | ---: | ---: | ---: |"
echo "| no health check | $idle_cpu | 0 | | $plain_rps |"
per_check=$(python3 -c "print(f'{($check_cpu - $idle_cpu) * 1000 / max($checks_per_s, 1):.1f}')")
echo "| health checks | $check_cpu | $checks_per_s | $per_check | $check_rps |"
echo
echo "# req/s with checks / without: $(python3 -c "print(f'{$check_rps / $plain_rps:.2f}')"); endpoints marked unhealthy: $unhealthy"
