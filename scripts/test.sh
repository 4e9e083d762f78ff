#!/usr/bin/env bash
# Runs every test of portcullis, installing first whatever the tests need.
# Used as is by newcomers and by CI (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

need_apt=()
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# The browser test (tests/it/browser.rs) drives Debian's headless Chromium through chromedriver.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
export DEBIAN_FRONTEND=noninteractive  # chromium's dependencies must not prompt
# forward-auth tests run the real nginx and Caddy (tests/it/fwdauth.rs)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_apt+=(nginx)
command -v caddy >/dev/null 2>&1 || need_apt+=(caddy)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing ${need_apt[*]}"
  # RUNLEVEL=1: the packages' postinst must not start system nginx/caddy services.
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq "${need_apt[@]}"; else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq "${need_apt[@]}"; fi
fi

log "format check"
cargo fmt --all -- --check

log "lints"
cargo clippy --locked --all-targets -- -D warnings

# --- end-to-end provider (tests/e2e: node's oidc-provider, pinned by package-lock.json) ---
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  log "installing nodejs and npm (for the end-to-end tests)"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq nodejs npm; else sudo apt-get update -qq && sudo apt-get install -y -qq nodejs npm; fi
fi
log "end-to-end provider packages (npm ci in tests/e2e, node $(node --version))"
(cd tests/e2e && npm ci --no-audit --no-fund)
# --- end of end-to-end provider ---

log "tests"
cargo test --locked --all-targets

# --- fuzzing smoke (opt-in; `cargo test` above already replays fuzz/corpus on stable) ---
if [ "${PORTCULLIS_FUZZ_SMOKE:-0}" = 1 ]; then
  log "fuzzing smoke run (30 s per target, nightly + cargo-fuzz)"
  ./scripts/fuzz.sh 30
fi
# --- end of fuzzing smoke ---

log "example configuration"
PORTCULLIS_CLIENT_SECRET=example PORTCULLIS_COOKIE_SECRET="$(cargo run --locked -q -- generate-secret)" \
  cargo run --locked -q -- check --config config/portcullis.toml
