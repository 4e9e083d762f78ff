#!/usr/bin/env bash
# portcullis against nginx proxy_pass and Apache + mod_auth_openidc, on this machine, on
# 127.0.0.1 only. Installs what it needs (Debian packages, the e2e suite's oidc-provider),
# builds portcullis, starts:
#   - the upstream: nginx answering a small static body (one worker);
#   - baseline A: nginx proxy_pass to it (no authentication): the cost of one proxy hop;
#   - baseline B: Apache 2.4 event MPM + mod_auth_openidc (server-side shm sessions, PKCE),
#     logging in at the same OpenID provider (tests/e2e/provider.mjs, node's oidc-provider);
#   - portcullis (memory store);
# logs in to both authenticating proxies with a scripted browser (benches/bench.py login),
# measures the proxy CPU of a login, then runs wrk against upstream direct, nginx,
# mod_auth_openidc (with its session), portcullis (with its session) and portcullis
# unauthenticated (302s), interleaved over several rounds, and prints medians of req/s,
# p50/p99 latency, proxy CPU per request and peak RSS, with ratios against the baselines of
# the same run. The table is written to benches/results/<date>.md.
#
# Everything it starts is stopped by pid on exit; nothing is started as a system service.
#
# Usage: benches/compare.sh                 (full: 3 rounds x 10 s per target)
#        QUICK=1 benches/compare.sh         (smoke check: 1 round x 3 s, a few logins)
# Settings (environment):
#   BENCH_THREADS=2 BENCH_CONNECTIONS=64 BENCH_DURATION=10 (s) BENCH_ROUNDS=3
#   BENCH_WARMUP=2 (s per target before the rounds)  BENCH_LOGINS=100 (login CPU sample)
#   BENCH_TARGETS="upstream nginx mod_auth_openidc portcullis portcullis_anon"
#   BENCH_PROFILE=release (or dist: fat LTO, slow to build)
#   BENCH_NGINX_WORKERS=auto (nginx proxy workers; the upstream always has one)
#   BENCH_APACHE_CHILDREN=2 BENCH_APACHE_THREADS=64
#   BENCH_ACCESS_LOG=0 (1: every proxy writes an access log to a file)
#   BENCH_PERF=0 (1: also profile portcullis under load with perf, top functions in the report)
#   BENCH_PERF_GRAPH=0 (1: record call graphs too; with BENCH_KEEP=1 for perf report --children)
#   BENCH_SKIP_INSTALL=0 BENCH_SKIP_BUILD=0 BENCH_KEEP=0 (1: keep the temp dir)
#   BENCH_OUT=benches/results/<date>.md
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
COMMAND_LINE="$( (env | grep -E '^(QUICK|BENCH_[A-Z_]+)=' || true) | sort | tr '\n' ' ')benches/compare.sh $*"

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
  : "${BENCH_DURATION:=3}" "${BENCH_ROUNDS:=1}" "${BENCH_WARMUP:=1}" "${BENCH_LOGINS:=10}"
fi
THREADS=${BENCH_THREADS:-2}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
DURATION=${BENCH_DURATION:-10}
ROUNDS=${BENCH_ROUNDS:-3}
WARMUP=${BENCH_WARMUP:-2}
LOGINS=${BENCH_LOGINS:-100}
TARGETS=${BENCH_TARGETS:-"upstream nginx mod_auth_openidc portcullis portcullis_anon"}
PROFILE=${BENCH_PROFILE:-release}
NGINX_WORKERS=${BENCH_NGINX_WORKERS:-auto}
APACHE_CHILDREN=${BENCH_APACHE_CHILDREN:-2}
APACHE_THREADS=${BENCH_APACHE_THREADS:-64}
ACCESS_LOG=${BENCH_ACCESS_LOG:-0}
PERF=${BENCH_PERF:-0}
DATE=$(date -u +%F)
if [ "$QUICK" = 1 ]; then
  OUT=${BENCH_OUT:-benches/results/$DATE-quick.md}
else
  OUT=${BENCH_OUT:-benches/results/$DATE.md}
fi

log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'compare.sh: %s\n' "$*" >&2; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# --- install -----------------------------------------------------------------------------
if [ "${BENCH_SKIP_INSTALL:-0}" != 1 ]; then
  need=()
  [ -x /usr/sbin/nginx ] || need+=(nginx)
  [ -x /usr/sbin/apache2 ] || need+=(apache2)
  [ -f /usr/lib/apache2/modules/mod_auth_openidc.so ] || need+=(libapache2-mod-auth-openidc)
  command -v wrk >/dev/null 2>&1 || need+=(wrk)
  command -v node >/dev/null 2>&1 || need+=(nodejs)
  command -v npm >/dev/null 2>&1 || need+=(npm)
  command -v python3 >/dev/null 2>&1 || need+=(python3)
  command -v curl >/dev/null 2>&1 || need+=(curl)
  if [ "$PERF" = 1 ] && ! command -v perf >/dev/null 2>&1; then need+=(linux-perf); fi
  if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    # RUNLEVEL=1: the packages' postinst must not start system nginx/apache services.
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq "${need[@]}"
  fi
  if [ ! -f tests/e2e/node_modules/oidc-provider/package.json ]; then
    log "oidc-provider (npm ci in tests/e2e)"
    (cd tests/e2e && npm ci --no-audit --no-fund)
  fi
fi

# --- build -------------------------------------------------------------------------------
case "$PROFILE" in release) BIN=target/release/portcullis ;; *) BIN=target/$PROFILE/portcullis ;; esac
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  log "building portcullis (cargo build --profile $PROFILE)"
  cargo build --locked --profile "$PROFILE"
fi
[ -x "$BIN" ] || die "$BIN is missing"

# --- processes ---------------------------------------------------------------------------
DIR=$(mktemp -d /tmp/portcullis-bench.XXXXXX)
chmod 755 "$DIR"
PIDS=()
cleanup() {
  local pid i
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "kept $DIR" >&2; else rm -rf "$DIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r UPSTREAM_PORT NGINX_PORT APACHE_PORT PORTCULLIS_PORT IDP_PORT \
  < <(python3 benches/bench.py free-ports 5)
CLIENT_ID=bench
# Fixed, obviously fake fixture values: everything runs on loopback for the benchmark only.
CLIENT_SECRET=bench-only-client-secret-not-a-secret
APACHE_PASSPHRASE=bench-only-passphrase-not-a-secret
COOKIE_SECRET=$("$BIN" generate-secret)
if [ "$(id -u)" = 0 ]; then APACHE_USER="User www-data
Group www-data"; else APACHE_USER=""; fi
if [ "$ACCESS_LOG" = 1 ]; then
  NGINX_ACCESS_LOG="$DIR/nginx-access.log"
  APACHE_ACCESS_LOG="LogFormat \"%h %l %u %t \\\"%r\\\" %>s %b\" common
CustomLog $DIR/apache-access.log common"
  PORTCULLIS_LOG=info
else
  NGINX_ACCESS_LOG=off
  APACHE_ACCESS_LOG=""
  PORTCULLIS_LOG="info,portcullis::access=off"
fi
mkdir -p "$DIR/apache-run" && chmod 1777 "$DIR/apache-run"

# fill TEMPLATE OUT: replaces @NAME@ with the value of the shell variable NAME.
fill() {
  local text name
  text=$(cat "$1")
  for name in DIR UPSTREAM_PORT NGINX_PORT APACHE_PORT PORTCULLIS_PORT IDP_PORT CLIENT_ID \
    CLIENT_SECRET APACHE_PASSPHRASE COOKIE_SECRET NGINX_WORKERS APACHE_CHILDREN \
    APACHE_THREADS NGINX_ACCESS_LOG; do
    text=${text//@$name@/${!name}}
  done
  text=${text//@APACHE_WORKERS@/$((APACHE_CHILDREN * APACHE_THREADS))}
  text=${text//@APACHE_USER@/$APACHE_USER}
  text=${text//@APACHE_ACCESS_LOG@/$APACHE_ACCESS_LOG}
  printf '%s\n' "$text" >"$2"
}

# wait_http URL WHAT [PID]: until URL answers (any status), at most 30 s.
wait_http() {
  local i
  for i in $(seq 300); do
    if curl -s -o /dev/null --max-time 2 "$1"; then return 0; fi
    if [ -n "${3:-}" ] && ! kill -0 "$3" 2>/dev/null; then die "$2 exited; see $DIR"; fi
    sleep 0.1
  done
  die "$2 did not answer at $1 within 30 s"
}

log "starting the upstream, nginx, oidc-provider, portcullis and Apache in $DIR"
fill benches/conf/upstream-nginx.conf "$DIR/upstream.conf"
/usr/sbin/nginx -p "$DIR" -c "$DIR/upstream.conf" -e "$DIR/upstream-error.log" &
UPSTREAM_PID=$!; PIDS+=("$UPSTREAM_PID")
fill benches/conf/proxy-nginx.conf "$DIR/nginx.conf"
/usr/sbin/nginx -p "$DIR" -c "$DIR/nginx.conf" -e "$DIR/nginx-error.log" &
NGINX_PID=$!; PIDS+=("$NGINX_PID")

E2E_CLIENT_SECRET=$CLIENT_SECRET node tests/e2e/provider.mjs --port "$IDP_PORT" \
  --key-file "$DIR/idp-key.json" --client-id "$CLIENT_ID" \
  --redirect-uri "http://127.0.0.1:$PORTCULLIS_PORT/oauth2/callback" \
  --redirect-uri "http://127.0.0.1:$APACHE_PORT/oauth2cb" \
  >"$DIR/idp.out" 2>"$DIR/idp.err" &
IDP_PID=$!; PIDS+=("$IDP_PID")
for _ in $(seq 300); do
  grep -q '^ready ' "$DIR/idp.out" 2>/dev/null && break
  kill -0 "$IDP_PID" 2>/dev/null || die "oidc-provider exited: $(cat "$DIR/idp.err")"
  sleep 0.1
done
grep -q '^ready ' "$DIR/idp.out" || die "oidc-provider not ready within 30 s"

fill benches/conf/portcullis.toml "$DIR/portcullis.toml"
RUST_LOG=$PORTCULLIS_LOG "$BIN" --config "$DIR/portcullis.toml" 2>"$DIR/portcullis.log" &
PORTCULLIS_PID=$!; PIDS+=("$PORTCULLIS_PID")

fill benches/conf/apache-oidc.conf "$DIR/apache.conf"
/usr/sbin/apache2 -f "$DIR/apache.conf" -DFOREGROUND &
APACHE_PID=$!; PIDS+=("$APACHE_PID")

wait_http "http://127.0.0.1:$UPSTREAM_PORT/" upstream "$UPSTREAM_PID"
wait_http "http://127.0.0.1:$NGINX_PORT/" nginx "$NGINX_PID"
wait_http "http://127.0.0.1:$APACHE_PORT/" apache "$APACHE_PID"
for _ in $(seq 300); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORTCULLIS_PORT/readyz")" = 200 ] && break
  kill -0 "$PORTCULLIS_PID" 2>/dev/null || die "portcullis exited: $(cat "$DIR/portcullis.log")"
  sleep 0.1
done

# --- logins ------------------------------------------------------------------------------
log "logging in (scripted browser: the provider's login and consent forms)"
P_COOKIE=$(python3 benches/bench.py login --start "http://127.0.0.1:$PORTCULLIS_PORT/" --cookie _portcullis)
A_COOKIE=$(python3 benches/bench.py login --start "http://127.0.0.1:$APACHE_PORT/" --cookie mod_auth_openidc_session)
ACCEPT="Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
status() { curl -s -o /dev/null -w '%{http_code}' -H "$ACCEPT" "$@"; }
[ "$(status -H "Cookie: $P_COOKIE" "http://127.0.0.1:$PORTCULLIS_PORT/")" = 200 ] || die "portcullis session not accepted"
[ "$(status -H "Cookie: $A_COOKIE" "http://127.0.0.1:$APACHE_PORT/")" = 200 ] || die "mod_auth_openidc session not accepted"
[ "$(status "http://127.0.0.1:$PORTCULLIS_PORT/")" = 302 ] || die "portcullis did not redirect an anonymous browser"

log "login CPU: $LOGINS logins at portcullis, then at mod_auth_openidc"
LOGIN_P=$(python3 benches/bench.py login-cpu --start "http://127.0.0.1:$PORTCULLIS_PORT/" \
  --callback-path /oauth2/callback --pid "$PORTCULLIS_PID" --count "$LOGINS")
LOGIN_A=$(python3 benches/bench.py login-cpu --start "http://127.0.0.1:$APACHE_PORT/" \
  --callback-path /oauth2cb --pid "$APACHE_PID" --count "$LOGINS")
echo "portcullis:       $LOGIN_P" >&2
echo "mod_auth_openidc: $LOGIN_A" >&2

# --- load --------------------------------------------------------------------------------
STUB="http://127.0.0.1:$UPSTREAM_PORT/__bench_stub"
TSV="$DIR/runs.tsv"
target_args() { # target -> "pid url [cookie]"
  case "$1" in
    upstream) echo "$UPSTREAM_PID http://127.0.0.1:$UPSTREAM_PORT/" ;;
    nginx) echo "$NGINX_PID http://127.0.0.1:$NGINX_PORT/" ;;
    mod_auth_openidc) echo "$APACHE_PID http://127.0.0.1:$APACHE_PORT/ $A_COOKIE" ;;
    portcullis) echo "$PORTCULLIS_PID http://127.0.0.1:$PORTCULLIS_PORT/ $P_COOKIE" ;;
    portcullis_anon) echo "$PORTCULLIS_PID http://127.0.0.1:$PORTCULLIS_PORT/" ;;
    *) die "unknown target $1" ;;
  esac
}
# run TARGET ROUND SECONDS: one wrk run; ROUND 0 is the warm-up (not recorded).
run() {
  local target=$1 round=$2 secs=$3 pid url cookie hdr=() cpu0 cpu1 hits0 hits1 out parsed
  read -r pid url cookie < <(target_args "$target")
  [ -n "${cookie:-}" ] && hdr=(-H "Cookie: $cookie")
  out="$DIR/wrk-$target-$round.txt"
  hits0=$(python3 benches/bench.py stub "$STUB")
  cpu0=$(python3 benches/bench.py cpu "$pid")
  wrk -t "$THREADS" -c "$CONNECTIONS" -d "${secs}s" --latency -H "$ACCEPT" "${hdr[@]}" "$url" >"$out"
  cpu1=$(python3 benches/bench.py cpu "$pid")
  hits1=$(python3 benches/bench.py stub "$STUB")
  [ "$round" = 0 ] && return 0
  parsed=$(python3 benches/bench.py wrk "$out")
  local reqs rps p50 p99 non2xx errs
  IFS=$'\t' read -r reqs rps p50 p99 non2xx errs <<<"$parsed"
  printf '%-17s round %s: %9.0f req/s  p50 %6.2f ms  p99 %6.2f ms  %6.1f µs CPU/req  upstream hits %s/%s%s\n' \
    "$target" "$round" "$rps" "$p50" "$p99" "$(awk -v c=$((cpu1 - cpu0)) -v n="$reqs" 'BEGIN {print (n > 0 ? c / n : 0)}')" \
    "$((hits1 - hits0 - 1))" "$reqs" "$(if [ "$non2xx" != 0 ]; then echo "  non-2xx/3xx $non2xx"; fi)" >&2
  [ "$errs" = - ] && errs=""
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$round" "$reqs" "$rps" "$p50" \
    "$p99" "$((cpu1 - cpu0))" "$((hits1 - hits0 - 1))" "$(python3 benches/bench.py hwm "$pid")" \
    "$errs" >>"$TSV"
}

nginx_version=$(/usr/sbin/nginx -v 2>&1 | sed 's|.*/||')
apache_version=$(/usr/sbin/apache2 -v | sed -n 's|^Server version: Apache/\([^ ]*\).*|\1|p')
oidc_version=$(dpkg-query -W -f '${Version}' libapache2-mod-auth-openidc 2>/dev/null || echo '?')
provider_version=$(node -p "require('./tests/e2e/node_modules/oidc-provider/package.json').version")
portcullis_version="$("$BIN" --version | awk '{print $2}') ($(git rev-parse --short HEAD 2>/dev/null || echo '?'), profile $PROFILE)"
{
  printf '#date\t%s\n' "$(date -u '+%F %H:%M UTC')"
  printf '#machine\tnproc %s, %s, %s MiB RAM, %s\n' "$(nproc)" \
    "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)" \
    "$(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo)" "$(uname -sr)"
  printf '#load\tload average before the runs: %s (the machine is shared: absolute numbers are noisy, compare the ratios)\n' \
    "$(cut -d' ' -f1-3 /proc/loadavg)"
  printf '#versions\tportcullis %s, nginx %s, Apache %s (event MPM), mod_auth_openidc %s, oidc-provider %s, wrk %s, %s\n' \
    "$portcullis_version" "$nginx_version" "$apache_version" "$oidc_version" "$provider_version" \
    "$(dpkg-query -W -f '${Version}' wrk 2>/dev/null || echo '?')" "$(rustc --version 2>/dev/null || echo rustc?)"
  printf '#command\t`%s`\n' "$COMMAND_LINE"
  printf '#settings\twrk -t%s -c%s -d%ss, %s round(s) interleaved, %ss warm-up per target, nginx proxy workers %s, Apache %s children x %s threads, access logs %s, %s logins\n' \
    "$THREADS" "$CONNECTIONS" "$DURATION" "$ROUNDS" "$WARMUP" "$NGINX_WORKERS" \
    "$APACHE_CHILDREN" "$APACHE_THREADS" "$([ "$ACCESS_LOG" = 1 ] && echo on || echo off)" "$LOGINS"
  printf '#login\t%s\n' "$LOGIN_P"
  printf '#login_oidc\t%s\n' "$LOGIN_A"
} >"$TSV"

log "warm-up (${WARMUP}s per target)"
for t in $TARGETS; do run "$t" 0 "$WARMUP"; done
for r in $(seq "$ROUNDS"); do
  log "round $r of $ROUNDS"
  for t in $TARGETS; do run "$t" "$r" "$DURATION"; done
done

# The sessions must have survived the runs (mod_auth_openidc's inactivity timeout, eviction).
[ "$(status -H "Cookie: $P_COOKIE" "http://127.0.0.1:$PORTCULLIS_PORT/")" = 200 ] || echo "WARNING: the portcullis session ended during the runs" >&2
[ "$(status -H "Cookie: $A_COOKIE" "http://127.0.0.1:$APACHE_PORT/")" = 200 ] || echo "WARNING: the mod_auth_openidc session ended during the runs" >&2

mkdir -p "$(dirname "$OUT")"
log "results ($OUT)"
python3 benches/bench.py report "$TSV" "$OUT"

if [ "$PERF" = 1 ]; then
  log "profiling portcullis under load (perf, ${DURATION}s)"
  # BENCH_PERF_GRAPH=1: DWARF call graphs (perf.data kept with BENCH_KEEP=1 for `perf report --children`).
  graph=(); [ "${BENCH_PERF_GRAPH:-0}" = 1 ] && graph=(--call-graph dwarf,32768)
  perf record -q -F 999 "${graph[@]}" -p "$PORTCULLIS_PID" -o "$DIR/perf.data" -- sleep "$DURATION" 2>"$DIR/perf.err" &
  PERF_PID=$!; PIDS+=("$PERF_PID")
  wrk -t "$THREADS" -c "$CONNECTIONS" -d "${DURATION}s" -H "$ACCEPT" -H "Cookie: $P_COOKIE" \
    "http://127.0.0.1:$PORTCULLIS_PORT/" >/dev/null
  wait "$PERF_PID" || true
  {
    printf '\n## Profile: portcullis with a session under wrk (perf record -F 999, self time)\n\n```\n'
    perf report -i "$DIR/perf.data" --no-children --sort dso -g none --stdio 2>/dev/null \
      | grep '%' | grep -v '^#' | sed 's/[ -]*$//' | head -8
    echo
    perf report -i "$DIR/perf.data" --no-children --sort dso,symbol -g none --percent-limit 0.5 --stdio 2>/dev/null \
      | grep '%' | grep -v '^#' | sed 's/[ -]*$//' | head -40
    printf '```\n'
  } >>"$OUT"
  tail -n +1 "$OUT" | sed -n '/^## Profile/,$p'
fi
