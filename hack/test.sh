#!/usr/bin/env bash
# The one command that proves the whole project: formatting, lints, and every test (unit,
# simulator, client, CRD drift, chart, and end to end against a real kube-apiserver + etcd).
#
# On a fresh machine it first builds the Kubernetes tools (kube-apiserver, etcd, kubectl,
# helm, kubeconform) from the Go module proxy and caches them under ~/.cache/tailkeeper, and
# installs Debian's chromium package (as root) for the evidence report's browser test.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "Kubernetes tools (built once, then cached)"
bin_dir="$(hack/k8s-tools.sh | tail -n 1)"
echo "tools in $bin_dir"

step "Chromium (Debian's package, installed once when missing)"
# tests/evidence_report.rs renders the access-review evidence report in headless Chromium. The
# first install downloads about 124 MB (414 MB on disk, 25 packages) and takes about 20 s;
# when chromium is present (or TAILKEEPER_CHROMIUM names a browser) this step costs nothing.
if [ -z "${TAILKEEPER_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "install Debian's chromium package (or set TAILKEEPER_CHROMIUM to a browser)" >&2
    exit 1
  fi
  apt_log="$(mktemp)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >"$apt_log" 2>&1 \
    || { apt-get update -q >>"$apt_log" 2>&1 \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >>"$apt_log" 2>&1; } \
    || { cat "$apt_log" >&2; echo "apt-get install chromium failed" >&2; exit 1; }
  rm -f "$apt_log"
fi
echo "chromium: $("${TAILKEEPER_CHROMIUM:-chromium}" --version 2>/dev/null)"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings denied)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "gofmt and go vet (hack/contract, the Go client contract program)"
unformatted="$(gofmt -l hack/contract)"
if [ -n "$unformatted" ]; then
  echo "gofmt would change: $unformatted" >&2
  exit 1
fi
(cd hack/contract && GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" go vet ./...)

step "cargo test (all crates, all tests)"
cargo test --workspace --locked --no-fail-fast -- --test-threads="${TAILKEEPER_TEST_THREADS:-4}"
