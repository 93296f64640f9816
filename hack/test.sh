#!/usr/bin/env bash
# The one command that proves the whole project: formatting, lints, and every test (unit,
# simulator, client, CRD drift, chart, and end to end against a real kube-apiserver + etcd).
#
# On a fresh machine it first builds the Kubernetes tools (kube-apiserver, etcd, kubectl,
# helm, kubeconform) from the Go module proxy and caches them under ~/.cache/tailkeeper.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "Kubernetes tools (built once, then cached)"
bin_dir="$(hack/k8s-tools.sh | tail -n 1)"
echo "tools in $bin_dir"

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
