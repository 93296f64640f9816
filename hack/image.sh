#!/usr/bin/env bash
# Build the operator image with podman from Debian's packages only (no image registry is
# needed): the static (musl) binary on an empty base holding what distroless/static holds
# for it: CA certificates (Debian's ca-certificates), /etc/passwd and /etc/group with the
# nonroot user 65532, and /tmp. The Dockerfile builds the same binary onto
# gcr.io/distroless/static-debian12:nonroot for users with public registries: same path
# (/tailkeeper), user (65532:65532), entrypoint and command, so the chart runs either alike.
#
#   hack/image.sh            build localhost/tailkeeper:dev (TAILKEEPER_IMAGE overrides)
#
# Installs podman, runc and musl-tools from Debian when missing (as root). podman runs with
# runc, cgroupfs and no default ulimits (what works on these machines), from a containers.conf
# of its own (CONTAINERS_CONF). Prints the image reference as the last line of stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE="${TAILKEEPER_IMAGE:-localhost/tailkeeper:dev}"
TARGET=x86_64-unknown-linux-musl
log() { printf '[image] %s\n' "$*" >&2; }
die() { printf '[image] ERROR: %s\n' "$*" >&2; exit 1; }

missing=()
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v runc >/dev/null 2>&1 || missing+=(runc)
command -v musl-gcc >/dev/null 2>&1 || missing+=(musl-tools)
[[ -r /etc/ssl/certs/ca-certificates.crt ]] || missing+=(ca-certificates)
if ((${#missing[@]})); then
  [[ "$(id -u)" == 0 ]] || die "install ${missing[*]} (Debian packages) first"
  log "installing ${missing[*]} from Debian"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2 \
    || { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2; } \
    || die "apt-get install ${missing[*]} failed"
fi

conf_dir="${XDG_CACHE_HOME:-$HOME/.cache}/tailkeeper"
mkdir -p "$conf_dir"
export CONTAINERS_CONF="$conf_dir/containers.conf"
cat >"$CONTAINERS_CONF" <<'EOF'
[containers]
default_ulimits = []
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF

rustup target list --installed 2>/dev/null | grep -qx "$TARGET" \
  || rustup target add "$TARGET" >&2 || die "rustup target add $TARGET failed"
log "cargo build --release --target $TARGET"
CC_x86_64_unknown_linux_musl=musl-gcc \
  cargo build --release --locked --target "$TARGET" -p tailkeeper --bin tailkeeper >&2 \
  || die "building the static binary failed"

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/rootfs/etc/ssl/certs" "$ctx/rootfs/tmp" "$ctx/rootfs/home/nonroot"
chmod 1777 "$ctx/rootfs/tmp"
cp /etc/ssl/certs/ca-certificates.crt "$ctx/rootfs/etc/ssl/certs/"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
  >"$ctx/rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$ctx/rootfs/etc/group"
install -m 0755 "target/$TARGET/release/tailkeeper" "$ctx/tailkeeper"
cat >"$ctx/Containerfile" <<'EOF'
FROM scratch
LABEL org.opencontainers.image.title="tailkeeper" \
      org.opencontainers.image.description="Access-governance operator for Tailscale tailnets" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY rootfs/ /
COPY tailkeeper /tailkeeper
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/tailkeeper"]
CMD ["run"]
EOF
log "podman build -t $IMAGE"
podman build --quiet -t "$IMAGE" "$ctx" >&2 || die "podman build failed"
echo "$IMAGE"
