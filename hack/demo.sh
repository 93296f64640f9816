#!/usr/bin/env bash
# The one-command demo: a throwaway Kubernetes control plane (etcd + kube-apiserver on
# 127.0.0.1), the Tailscale API simulator seeded with a small tailnet (demo/seed.json), and
# the operator, with examples/ applied. Prints the compliance checks, then walks through a
# just-in-time grant (frank requests admin for himself, erin approves through her group sre,
# it activates in Tailscale and expires), shows the example access review of the admins open,
# prints the commands to do the same by hand, then waits for Ctrl-C and removes everything it
# started.
#
#   hack/demo.sh              build (release), start, print, wait for Ctrl-C
#   hack/demo.sh --once       the same, but clean up and exit 0 after printing (CI)
#
# Options:
#   --debug            build and use debug binaries (faster to build, default: release)
#   --once             do not wait for Ctrl-C; clean up and exit after printing
#   --keep             keep the state dir (logs, etcd data, kubeconfig) on exit
#   --seed FILE        seed the simulated tailnet from FILE (default demo/seed.json; see
#                      simulator/src/seed.rs for the format)
#   --sim-port PORT    port of the Tailscale simulator (default 8088)
#   --state-dir DIR    state dir (default ${TMPDIR:-/tmp}/tailkeeper-demo); holds the
#                      kubeconfig, certificates, etcd data and every process's log
#   --bin-dir DIR      take tailkeeper and tailscale-sim from DIR instead of building them
#   --k8s-bin-dir DIR  take etcd, kube-apiserver and kubectl from DIR instead of
#                      hack/k8s-tools.sh
#   -h, --help
#
# Environment:
#   TAILKEEPER_BIN, TAILSCALE_SIM_BIN  paths of already-built binaries (skip cargo build)
#   TAILKEEPER_K8S_BIN_DIR             same as --k8s-bin-dir
#   RUST_LOG                           log filter of the operator and the simulator (info)
#
# Everything listens on 127.0.0.1 only. Only processes this script started are stopped
# (recorded as pid + start time under STATE_DIR/pids). Re-running is safe: if an earlier
# run was killed outright (SIGKILL), the next run with the same state dir stops what that
# run left behind and starts afresh; while a demo runs, a second one with the same state
# dir refuses to start.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$REPO"

NAMESPACE=tailkeeper-demo
DEFAULT_SIM_URL="http://127.0.0.1:8088"

PROFILE=release
ONCE=false
SEED=demo/seed.json
KEEP=false
SIM_PORT=8088
STATE_DIR="${TMPDIR:-/tmp}/tailkeeper-demo"
BIN_DIR=""
K8S_BIN_DIR="${TAILKEEPER_K8S_BIN_DIR:-}"

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

say() { printf '==> %s\n' "$*"; }
warn() { printf 'demo: %s\n' "$*" >&2; }

# ------------------------------------------------------------------ arguments
while (($#)); do
  case "$1" in
    --debug) PROFILE=debug ;;
    --release) PROFILE=release ;;
    --once) ONCE=true ;;
    --seed) SEED="${2:?--seed needs a file}"; shift ;;
    --seed=*) SEED="${1#*=}" ;;
    --keep) KEEP=true ;;
    --sim-port) SIM_PORT="${2:?--sim-port needs a value}"; shift ;;
    --sim-port=*) SIM_PORT="${1#*=}" ;;
    --state-dir) STATE_DIR="${2:?--state-dir needs a value}"; shift ;;
    --state-dir=*) STATE_DIR="${1#*=}" ;;
    --bin-dir) BIN_DIR="${2:?--bin-dir needs a value}"; shift ;;
    --bin-dir=*) BIN_DIR="${1#*=}" ;;
    --k8s-bin-dir) K8S_BIN_DIR="${2:?--k8s-bin-dir needs a value}"; shift ;;
    --k8s-bin-dir=*) K8S_BIN_DIR="${1#*=}" ;;
    -h|--help) usage; exit 0 ;;
    *) warn "unknown argument: $1 (see --help)"; exit 2 ;;
  esac
  shift
done

[[ "$SIM_PORT" =~ ^[0-9]+$ ]] && ((SIM_PORT > 0 && SIM_PORT < 65536)) \
  || { warn "--sim-port must be a port number, not '$SIM_PORT'"; exit 2; }
[[ -r "$SEED" ]] || { warn "--seed: cannot read '$SEED'"; exit 2; }
[[ "$SEED" == /* ]] || SEED="$PWD/$SEED"
[[ "$STATE_DIR" == /* ]] || STATE_DIR="$PWD/$STATE_DIR"
STATE_DIR="${STATE_DIR%/}"
[[ -n "$STATE_DIR" && "$STATE_DIR" != / ]] || { warn "refusing to use / as the state dir"; exit 2; }

MARKER="$STATE_DIR/.tailkeeper-demo"
PID_DIR="$STATE_DIR/pids"
KUBECONFIG_PATH="$STATE_DIR/kubeconfig"
STARTED=()          # names of the processes this run started, in start order
CLEANED=false
OWN_STATE=false     # whether this run created (and so may remove) STATE_DIR

# ------------------------------------------------------------------ processes
# "<pid> <start time>" identifies a process across PID reuse.
# Fails for a process that is gone or a zombie (exited, not yet reaped).
proc_start_time() { # pid -> field 22 of /proc/pid/stat
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"          # drop "pid (comm) ", comm may hold spaces
  # shellcheck disable=SC2086
  set -- $stat
  [[ "$1" != Z && "$1" != X ]] || return 1
  printf '%s\n' "${20}"
}

# True when the process recorded in a pid file (by this or an earlier run) still runs.
recorded_alive() { # pidfile
  local pid start now
  read -r pid start <"$1" 2>/dev/null || return 1
  [[ -n "$pid" ]] || return 1
  now="$(proc_start_time "$pid")" || return 1
  [[ "$now" == "$start" ]]
}

stop_recorded() { # pidfile name
  local pidfile=$1 name=$2 pid start i
  recorded_alive "$pidfile" || return 0
  read -r pid start <"$pidfile"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    recorded_alive "$pidfile" || break
    sleep 0.1
  done
  if recorded_alive "$pidfile"; then
    warn "$name (pid $pid) did not stop within 10s of SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

start_proc() { # name logfile command...
  local name=$1 log=$2; shift 2
  "$@" </dev/null >"$log" 2>&1 &
  local pid=$!
  local start
  start="$(proc_start_time "$pid")" || start=gone
  printf '%s %s\n' "$pid" "$start" >"$PID_DIR/$name.pid"
  printf '%s\n' "$name" >>"$PID_DIR/order"
  STARTED+=("$name")
  printf '    %-16s pid %-7s log %s\n' "$name" "$pid" "$log"
}

# Dies (with its log) if the named process has exited.
check_alive() { # name
  local name=$1
  if ! recorded_alive "$PID_DIR/$name.pid"; then
    local pid rc=0
    read -r pid _ <"$PID_DIR/$name.pid"
    wait "$pid" 2>/dev/null || rc=$?
    die "$name exited unexpectedly (exit status $rc)" "$name"
  fi
}

show_log() { # name [lines]
  local log="$STATE_DIR/$1.log" n=${2:-40}
  [[ -s "$log" ]] || return 0
  printf '\n----- last %s lines of %s -----\n' "$n" "$log" >&2
  tail -n "$n" "$log" >&2
}

die() { # message [name of the process whose log matters most]
  warn "ERROR: $1"
  if [[ -d "$STATE_DIR" ]] && $OWN_STATE; then
    if [[ -n "${2:-}" ]]; then
      show_log "$2" 60
    else
      local n
      for n in "${STARTED[@]}"; do show_log "$n" 25; done
    fi
    $KEEP || warn "(pass --keep to keep $STATE_DIR with every log after exit)"
  fi
  exit 1
}

cleanup() {
  local rc=$?
  $CLEANED && return
  CLEANED=true
  trap '' INT TERM
  if ((${#STARTED[@]})); then
    printf '\n==> stopping the demo\n' >&2
    local i name
    for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
      name="${STARTED[$i]}"
      stop_recorded "$PID_DIR/$name.pid" "$name"
      printf '    stopped %s\n' "$name" >&2
    done
  fi
  if $OWN_STATE; then
    if $KEEP; then
      printf '    kept %s (kubeconfig, logs, etcd data)\n' "$STATE_DIR" >&2
    else
      rm -rf -- "$STATE_DIR"
      printf '    removed %s\n' "$STATE_DIR" >&2
    fi
  fi
  return "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ ports
port_busy() { # port -> true when something accepts connections on 127.0.0.1:port
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

port_owner() { # best effort: "pid/name" of the listener
  command -v ss >/dev/null 2>&1 || return 0
  ss -Hltnp "sport = :$1" 2>/dev/null \
    | sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/ by \1 (pid \2)/p' | head -n1
}

CHOSEN_PORTS=" "
free_port() { # a port in 20000..32767 nobody listens on and not chosen yet
  local p i
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + RANDOM % 12768))
    [[ "$CHOSEN_PORTS" == *" $p "* ]] && continue
    port_busy "$p" && continue
    CHOSEN_PORTS+="$p "
    printf '%s\n' "$p"
    return 0
  done
  die "found no free port on 127.0.0.1"
}

wait_for() { # description timeout-seconds process-name command...
  local what=$1 timeout=$2 name=$3; shift 3
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    check_alive "$name"
    ((SECONDS < deadline)) || die "timed out after ${timeout}s waiting for $what" "$name"
    sleep 0.2
  done
}

# ------------------------------------------------------------------ state dir
prepare_state_dir() {
  if [[ -e "$STATE_DIR" ]]; then
    if [[ ! -f "$MARKER" ]]; then
      if [[ -d "$STATE_DIR" && -z "$(ls -A "$STATE_DIR")" ]]; then
        rmdir "$STATE_DIR"
      else
        warn "ERROR: $STATE_DIR exists and is not a demo state dir; not touching it (pass --state-dir)"
        exit 1
      fi
    else
      local owner
      owner="$(cat "$MARKER" 2>/dev/null || true)"
      if [[ -n "$owner" ]] && recorded_alive "$MARKER"; then
        warn "ERROR: a demo is already running (pid ${owner%% *}) with state dir $STATE_DIR."
        warn "       Stop it (Ctrl-C in its terminal, or: kill ${owner%% *}) or pass --state-dir DIR."
        exit 1
      fi
      # Left over from a run that was killed: stop what it started (newest first, as
      # cleanup does), then start afresh.
      local name
      if [[ -f "$STATE_DIR/pids/order" ]]; then
        while IFS= read -r name; do
          [[ "$name" =~ ^[a-z-]+$ && -f "$STATE_DIR/pids/$name.pid" ]] || continue
          if recorded_alive "$STATE_DIR/pids/$name.pid"; then
            warn "stopping $name left running by an earlier demo"
            stop_recorded "$STATE_DIR/pids/$name.pid" "$name"
          fi
        done < <(tac "$STATE_DIR/pids/order")
      fi
      rm -rf -- "$STATE_DIR"
    fi
  fi
  mkdir -p "$STATE_DIR"
  chmod 700 "$STATE_DIR"
  OWN_STATE=true
  printf '%s %s\n' "$$" "$(proc_start_time $$)" >"$MARKER"
  mkdir -p "$PID_DIR"
}

# ------------------------------------------------------------------ binaries
build_binaries() {
  local tk="${TAILKEEPER_BIN:-}" sim="${TAILSCALE_SIM_BIN:-}"
  if [[ -n "$BIN_DIR" ]]; then
    tk="${tk:-$BIN_DIR/tailkeeper}"
    sim="${sim:-$BIN_DIR/tailscale-sim}"
  fi
  local pkgs=()
  [[ -n "$tk" ]] || pkgs+=(-p tailkeeper)
  [[ -n "$sim" ]] || pkgs+=(-p tailscale-sim)
  if ((${#pkgs[@]})); then
    command -v cargo >/dev/null 2>&1 || die "cargo is not on PATH (needed to build ${pkgs[*]})"
    local flags=()
    [[ "$PROFILE" == release ]] && flags+=(--release)
    say "cargo build ${flags[*]:+${flags[*]} }${pkgs[*]}"
    local out
    out="$(cargo build "${flags[@]}" "${pkgs[@]}" --message-format=json-render-diagnostics)" \
      || die "cargo build failed (see above)"
    local exe
    while IFS= read -r exe; do
      case "$exe" in
        */tailkeeper) [[ -n "$tk" ]] || tk="$exe" ;;
        */tailscale-sim) [[ -n "$sim" ]] || sim="$exe" ;;
      esac
    done < <(printf '%s\n' "$out" | grep -o '"executable":"[^"]*"' | sed 's/^"executable":"//; s/"$//')
  fi
  [[ -x "$tk" ]] || die "tailkeeper binary not found or not executable: ${tk:-<none>}"
  [[ -x "$sim" ]] || die "tailscale-sim binary not found or not executable: ${sim:-<none>}"
  TAILKEEPER="$tk"
  TAILSCALE_SIM="$sim"
}

k8s_tools() {
  if [[ -z "$K8S_BIN_DIR" ]]; then
    say "Kubernetes tools (hack/k8s-tools.sh: built once, then cached)"
    K8S_BIN_DIR="$(bash hack/k8s-tools.sh | tail -n 1)" || die "hack/k8s-tools.sh failed (see above)"
  fi
  local b
  for b in etcd kube-apiserver kubectl helm; do
    [[ -x "$K8S_BIN_DIR/$b" ]] || die "$b not found in $K8S_BIN_DIR"
  done
  ETCD="$K8S_BIN_DIR/etcd"
  KUBE_APISERVER="$K8S_BIN_DIR/kube-apiserver"
  KUBECTL="$K8S_BIN_DIR/kubectl"
}

kc() { "$KUBECTL" --kubeconfig "$KUBECONFIG_PATH" "$@"; }

random_hex() { head -c "$1" /dev/urandom | od -An -tx1 -v | tr -d ' \n'; }

service_account_keys() { # private-key public-key
  if command -v openssl >/dev/null 2>&1; then
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null \
      && openssl pkey -in "$1" -pubout -out "$2" 2>/dev/null && return 0
  fi
  if command -v ssh-keygen >/dev/null 2>&1; then
    rm -f "$1" "$1.pub"
    ssh-keygen -q -t rsa -b 2048 -m PKCS8 -N '' -C tailkeeper-demo -f "$1" >/dev/null \
      && ssh-keygen -e -m PKCS8 -f "$1.pub" >"$2" && rm -f "$1.pub" && return 0
  fi
  die "cannot generate the ServiceAccount signing key: neither openssl nor ssh-keygen works"
}

# ------------------------------------------------------------------ main
T0=$SECONDS

prepare_state_dir   # first: it stops what a killed earlier demo left running

if port_busy "$SIM_PORT"; then
  die "port $SIM_PORT on 127.0.0.1 is already in use$(port_owner "$SIM_PORT"); the simulator needs it.
       Stop what listens there, or pass --sim-port PORT."
fi
CHOSEN_PORTS+="$SIM_PORT "

for cmd in curl od head; do
  command -v "$cmd" >/dev/null 2>&1 || die "$cmd is required but not on PATH"
done

k8s_tools
build_binaries

ETCD_PORT="$(free_port)"; CHOSEN_PORTS+="$ETCD_PORT "
ETCD_PEER_PORT="$(free_port)"; CHOSEN_PORTS+="$ETCD_PEER_PORT "
APISERVER_PORT="$(free_port)"; CHOSEN_PORTS+="$APISERVER_PORT "
OPERATOR_PORT="$(free_port)"; CHOSEN_PORTS+="$OPERATOR_PORT "
SIM_URL="http://127.0.0.1:$SIM_PORT"

say "starting processes (state dir $STATE_DIR)"

# --- etcd
ETCD_URL="http://127.0.0.1:$ETCD_PORT"
PEER_URL="http://127.0.0.1:$ETCD_PEER_PORT"
start_proc etcd "$STATE_DIR/etcd.log" "$ETCD" \
  --name=tailkeeper-demo \
  --data-dir="$STATE_DIR/etcd" \
  --listen-client-urls="$ETCD_URL" --advertise-client-urls="$ETCD_URL" \
  --listen-peer-urls="$PEER_URL" --initial-advertise-peer-urls="$PEER_URL" \
  --initial-cluster="tailkeeper-demo=$PEER_URL" \
  --unsafe-no-fsync=true --log-level=warn
wait_for "etcd on $ETCD_URL" 60 etcd curl -sf "$ETCD_URL/health"

# --- kube-apiserver: static admin token, RBAC, self-signed serving cert
service_account_keys "$STATE_DIR/sa.key" "$STATE_DIR/sa.pub"
ADMIN_TOKEN="$(random_hex 24)"
# Two people for the grant walk-through: frank requests (group dev), erin approves (group sre,
# the example policy's approver group).
FRANK_TOKEN="$(random_hex 24)"
ERIN_TOKEN="$(random_hex 24)"
(umask 077 && {
  printf '%s,tailkeeper-demo-admin,tailkeeper-demo-admin,"system:masters"\n' "$ADMIN_TOKEN"
  printf '%s,frank,frank,"dev"\n' "$FRANK_TOKEN"
  printf '%s,erin,erin,"sre"\n' "$ERIN_TOKEN"
} >"$STATE_DIR/tokens.csv")
start_proc kube-apiserver "$STATE_DIR/kube-apiserver.log" "$KUBE_APISERVER" \
  --etcd-servers="$ETCD_URL" \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 \
  --secure-port="$APISERVER_PORT" \
  --cert-dir="$STATE_DIR/certs" \
  --token-auth-file="$STATE_DIR/tokens.csv" \
  --authorization-mode=RBAC \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$STATE_DIR/sa.pub" \
  --service-account-signing-key-file="$STATE_DIR/sa.key" \
  --service-cluster-ip-range=10.0.0.0/24 \
  --endpoint-reconciler-type=none \
  --enable-priority-and-fairness=false \
  --disable-admission-plugins=ServiceAccount \
  --profiling=false

# The self-signed serving certificate file holds the server certificate, then its CA.
two_certs() { [[ "$(grep -c -- '-----END CERTIFICATE-----' "$STATE_DIR/certs/apiserver.crt" 2>/dev/null)" -ge 2 ]]; }
wait_for "the kube-apiserver serving certificate" 120 kube-apiserver two_certs
awk '/-----BEGIN CERTIFICATE-----/ { block = "" } { block = block $0 "\n" }
     /-----END CERTIFICATE-----/ { last = block } END { printf "%s", last }' \
  "$STATE_DIR/certs/apiserver.crt" >"$STATE_DIR/ca.crt"
CA_DATA="$(base64 <"$STATE_DIR/ca.crt" | tr -d '\n')"
(umask 077 && cat >"$KUBECONFIG_PATH" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: tailkeeper-demo
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $CA_DATA
users:
- name: tailkeeper-demo-admin
  user:
    token: $ADMIN_TOKEN
- name: frank
  user:
    token: $FRANK_TOKEN
- name: erin
  user:
    token: $ERIN_TOKEN
contexts:
- name: tailkeeper-demo
  context:
    cluster: tailkeeper-demo
    user: tailkeeper-demo-admin
    namespace: $NAMESPACE
- name: frank
  context:
    cluster: tailkeeper-demo
    user: frank
    namespace: $NAMESPACE
- name: erin
  context:
    cluster: tailkeeper-demo
    user: erin
    namespace: $NAMESPACE
current-context: tailkeeper-demo
EOF
)
apiserver_ready() { [[ "$(kc get --raw /readyz 2>/dev/null)" == ok ]]; }
wait_for "kube-apiserver /readyz on https://127.0.0.1:$APISERVER_PORT" 120 kube-apiserver apiserver_ready

say "applying crds/ (server-side) and waiting for Established"
kc apply --server-side --force-conflicts --field-manager=tailkeeper-demo -f crds/ \
  || die "applying crds/ failed" kube-apiserver
kc wait --for=condition=Established --timeout=60s -f crds/ >/dev/null \
  || die "the CRDs did not become Established" kube-apiserver

# Who requests and who approves grants is proven by the chart's admission policies: without
# them no grant that needs approval activates, so the demo installs them as the chart does.
say "installing the chart's admission policies"
"$K8S_BIN_DIR/helm" template tailkeeper charts/tailkeeper --kube-version 1.37.2 \
  --show-only templates/admissionpolicy.yaml >"$STATE_DIR/admission.yaml" \
  || die "helm template of the admission policies failed"
kc apply --server-side --field-manager=tailkeeper-demo -f "$STATE_DIR/admission.yaml" >/dev/null \
  || die "applying the admission policies failed" kube-apiserver

# --- the Tailscale simulator
start_proc tailscale-sim "$STATE_DIR/tailscale-sim.log" \
  env RUST_LOG="${RUST_LOG:-info}" "$TAILSCALE_SIM" --listen "127.0.0.1:$SIM_PORT" --seed "$SEED"
sim_listening() { grep -q 'tailscale-sim listening on' "$STATE_DIR/tailscale-sim.log"; }
wait_for "the simulator on $SIM_URL" 60 tailscale-sim sim_listening

# --- the operator (one replica: no leader election needed)
start_proc tailkeeper "$STATE_DIR/tailkeeper.log" \
  env KUBECONFIG="$KUBECONFIG_PATH" RUST_LOG="${RUST_LOG:-info}" "$TAILKEEPER" run \
  --watch-namespace "$NAMESPACE" --listen "127.0.0.1:$OPERATOR_PORT" \
  --leader-election=false --allow-api-host 127.0.0.1
wait_for "the operator's /readyz on 127.0.0.1:$OPERATOR_PORT" 60 tailkeeper \
  curl -sf "http://127.0.0.1:$OPERATOR_PORT/readyz"

# --- the examples
say "creating namespace $NAMESPACE and applying examples/ (apiUrl -> $SIM_URL)"
kc create namespace "$NAMESPACE" --dry-run=client -o yaml | kc apply --server-side -f - >/dev/null \
  || die "creating namespace $NAMESPACE failed" kube-apiserver
shopt -s nullglob
examples=(examples/*.yaml examples/*.yml)
shopt -u nullglob
((${#examples[@]})) || die "no examples/*.yaml"
for f in "${examples[@]}"; do
  printf -- '---\n'
  sed "s#$DEFAULT_SIM_URL#$SIM_URL#g" "$f"
  printf '\n'
done >"$STATE_DIR/examples.yaml"
kc apply --server-side --field-manager=tailkeeper-demo -n "$NAMESPACE" -f "$STATE_DIR/examples.yaml" \
  || die "applying examples/ failed" kube-apiserver

say "waiting for the integration and the policy to be Ready"
for obj in tailscaleintegration/corp accesspolicy/corp; do
  kc wait -n "$NAMESPACE" --for=condition=Ready --timeout=120s "$obj" \
    || { kc get -n "$NAMESPACE" "$obj" -o yaml >&2 || true; die "$obj did not become Ready" tailkeeper; }
done
# Ready can come from an evaluation made before the integration's first sync; wait until
# every check was evaluated at or after the integration's last sync (RFC 3339 UTC strings
# compare in time order).
checks_current() {
  local synced evaluated t
  synced="$(kc get -n "$NAMESPACE" tailscaleintegration corp -o jsonpath='{.status.lastSyncTime}')"
  evaluated="$(kc get -n "$NAMESPACE" accesspolicy corp -o jsonpath='{.status.checks[*].evaluatedAt}')"
  [[ -n "$synced" && -n "$evaluated" ]] || return 1
  for t in $evaluated; do [[ ! "$t" < "$synced" ]] || return 1; done
}
wait_for "the policy's checks to reflect the integration's sync" 90 tailkeeper checks_current

# ------------------------------------------------------------------ report
echo
say "kubectl get tailscaleintegrations,accesspolicies,accessgrants -n $NAMESPACE"
kc get tailscaleintegrations,accesspolicies,accessgrants -n "$NAMESPACE"

echo
say "compliance checks of accesspolicy/corp ($(kc get -n "$NAMESPACE" accesspolicy corp -o jsonpath='{.status.checksPassing}') passing)"
printf '%-26s %-8s %s\n' CHECK RESULT FAILING-USERS
kc get -n "$NAMESPACE" accesspolicy corp -o jsonpath='{range .status.checks[*]}{.name}{"\t"}{.result}{"\t"}{.failingUsers[*].loginName}{"\n"}{end}' \
  | while IFS=$'\t' read -r name result users; do
      printf '%-26s %-8s %s\n' "$name" "$result" "${users:--}"
    done
echo
printf 'why:\n'
kc get -n "$NAMESPACE" accesspolicy corp -o jsonpath='{range .status.checks[*]}{range .failingUsers[*]}{.loginName}{"\t"}{.reason}{"\n"}{end}{end}' \
  | sort -u | while IFS=$'\t' read -r login reason; do
      printf '  %-26s %s\n' "$login" "$reason"
    done

# ------------------------------------------------------------------ a grant, start to end
# The chart's personas: frank may request (the requester role), erin may approve (the approver
# role); the admission policies installed above prove who does what. Grants change roles and
# the policy file, so the integration asks for those scopes.
say "a just-in-time grant: frank asks for admin, erin approves, it expires"
"$K8S_BIN_DIR/helm" template tailkeeper charts/tailkeeper --kube-version 1.37.2 \
  --show-only templates/aggregated-roles.yaml >"$STATE_DIR/personas.yaml" \
  || die "helm template of the persona roles failed"
kc apply --server-side --field-manager=tailkeeper-demo -f "$STATE_DIR/personas.yaml" >/dev/null \
  || die "applying the persona roles failed" kube-apiserver
kc create rolebinding frank-requests --clusterrole=tailkeeper-requester --user=frank \
  -n "$NAMESPACE" --dry-run=client -o yaml | kc apply --server-side -f - >/dev/null \
  || die "binding frank as a requester failed" kube-apiserver
# frank holds the approver role too (he approves others' requests): only the admission
# policies stand between him and approving his own.
kc create rolebinding approvers --clusterrole=tailkeeper-approver --user=erin --user=frank \
  -n "$NAMESPACE" --dry-run=client -o yaml | kc apply --server-side -f - >/dev/null \
  || die "binding the approvers failed" kube-apiserver
kc patch tailscaleintegration corp -n "$NAMESPACE" --type merge -p \
  '{"spec":{"credentials":{"oauthScopes":["users","devices:core:read","policy_file","devices:posture_attributes"]}}}' \
  >/dev/null || die "widening the integration's scopes failed" kube-apiserver

GRANT_DURATION=20s
cat >"$STATE_DIR/grant.yaml" <<GRANT
apiVersion: tailkeeper.io/v1alpha1
kind: AccessGrant
metadata: {name: frank-admin}
spec:
  policyRef: {name: corp}
  user: frank@example.com
  access: {role: admin}
  duration: $GRANT_DURATION
  reason: "INC-1234: restore the exit node"
  requestedBy: frank
GRANT
say "as frank: kubectl --context frank create -f $STATE_DIR/grant.yaml"
kc --context frank create -f "$STATE_DIR/grant.yaml" >/dev/null \
  || die "frank's request was refused" kube-apiserver
phase_is() { [[ "$(kc get -n "$NAMESPACE" accessgrant frank-admin -o jsonpath='{.status.phase}' 2>/dev/null)" == "$1" ]]; }
wait_for "the grant to await approval" 60 tailkeeper phase_is AwaitingApproval
GRANT_UID="$(kc get -n "$NAMESPACE" accessgrant frank-admin -o jsonpath='{.metadata.uid}')"
say "as frank, who holds the approver role too, approving his own grant: the cluster refuses"
kc --context frank patch accessgrant frank-admin --type merge \
  -p '{"spec":{"approval":{"approvedBy":"frank","grantUID":"'"$GRANT_UID"'"}}}' 2>&1 | sed 's/^/    /' || true
say "as erin, through her approver group sre"
kc --context erin patch accessgrant frank-admin --type merge \
  -p '{"spec":{"approval":{"approvedBy":"erin","group":"sre","grantUID":"'"$GRANT_UID"'"}}}' >/dev/null \
  || die "erin's approval was refused" kube-apiserver
wait_for "the grant to be Active" 60 tailkeeper phase_is Active
frank_role() {
  curl -sf "$SIM_URL/_sim/state" | tr '{' '\n' | grep '"loginName":"frank@example.com"' \
    | grep -o '"role":"[a-z-]*"' | head -1
}
kc get -n "$NAMESPACE" accessgrant frank-admin
printf '    frank in Tailscale: %s\n' "$(frank_role)"
wait_for "the grant to expire after $GRANT_DURATION" 90 tailkeeper phase_is Expired
kc get -n "$NAMESPACE" accessgrant frank-admin
printf '    frank in Tailscale: %s\n' "$(frank_role)"

# ------------------------------------------------------------------ an access review
say "an access review of the tailnet's admins (examples/40-access-review.yaml)"
review_open() {
  [[ -n "$(kc get -n "$NAMESPACE" accessreview admins-q4 -o jsonpath='{.status.itemsDigest}')" ]]
}
wait_for "the access review to open" 60 tailkeeper review_open
kc get -n "$NAMESPACE" accessreview admins-q4

cat <<EOF

==> the demo is up ($((SECONDS - T0))s)
  kube-apiserver  https://127.0.0.1:$APISERVER_PORT
  simulator       $SIM_URL
  operator        http://127.0.0.1:$OPERATOR_PORT/metrics
Explore it from another terminal:
  export KUBECONFIG=$KUBECONFIG_PATH
  export PATH="$K8S_BIN_DIR:\$PATH"
  # the status section has every check, its failing users and why
  kubectl get accesspolicy corp -o yaml
  kubectl get events
  # the simulated tailnet (users, devices, policy file)
  curl -s $SIM_URL/_sim/state
  # remove the unknown user, and ask for a sync now: CHECKS reads 2/4
  curl -s -X DELETE $SIM_URL/_sim/users/dave@example.com
  kubectl annotate tsi corp tailkeeper.io/sync-requested-at="\$(date -u +%FT%TZ)" --overwrite
  kubectl get accesspolicy corp -w
Ask for access and approve it yourself (contexts frank and erin are in the kubeconfig):
  kubectl delete ag frank-admin
  kubectl --context frank create -f $STATE_DIR/grant.yaml
  uid=\$(kubectl get ag frank-admin -o jsonpath='{.metadata.uid}')
  kubectl --context erin patch ag frank-admin --type merge \\
    -p '{"spec":{"approval":{"approvedBy":"erin","group":"sre","grantUID":"'"\$uid"'"}}}'
  kubectl get ag -w
Review access: the campaign over admins, its reviewers' share, and its evidence once over
  kubectl get accessreview admins-q4 -o yaml
  kubectl get accessreviewrecords
Logs: $STATE_DIR/{etcd,kube-apiserver,tailscale-sim,tailkeeper}.log
EOF

if $ONCE; then
  say "--once: cleaning up"
  exit 0
fi

echo
say "running; press Ctrl-C to stop and remove everything"
while true; do
  for name in "${STARTED[@]}"; do check_alive "$name"; done
  sleep 2
done
