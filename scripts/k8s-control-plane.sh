#!/usr/bin/env bash
# Build the Kubernetes control-plane binaries the k8s tests and the quick start run:
# etcd, kube-apiserver and kubectl, pinned to one release, from the Go module proxy.
#
#   bash scripts/k8s-control-plane.sh            # build if missing, print the bin dir on stdout
#   bash scripts/k8s-control-plane.sh --rebuild  # build again even if cached
#
# Everything lives outside the checkout (default /var/cache/pybpfman/k8s, override with
# PYBPFMAN_K8S_CACHE), including Go's module and build caches, so the second run only
# checks versions (well under a second). A cold build takes minutes on 2 cores.
#
# Why from source: kube-apiserver and etcd are not in Debian 12 at usable versions, and
# pinning one release built by the local Go toolchain needs nothing but the module proxy.
set -euo pipefail

K8S_VERSION=1.36.3
ETCD_VERSION=3.6.16
CACHE_ROOT="${PYBPFMAN_K8S_CACHE:-/var/cache/pybpfman/k8s}"
CACHE="$CACHE_ROOT/v$K8S_VERSION-etcd$ETCD_VERSION"
BIN="$CACHE/bin"
SRC="$CACHE/src"

log() { printf '==> k8s-control-plane: %s\n' "$*" >&2; }
die() { printf 'k8s-control-plane: %s\n' "$*" >&2; exit 1; }

REBUILD=0
case "${1:-}" in
    "") ;;
    --rebuild) REBUILD=1 ;;
    *) die "usage: $0 [--rebuild]" ;;
esac

# True when the cached binary reports the pinned release (first line of its version output;
# read whole, since `| head` would SIGPIPE the binary and fail under pipefail).
have() {
    local out
    case "$1" in
        etcd) out="$("$BIN/etcd" --version 2>/dev/null)" || return 1
              [ "${out%%$'\n'*}" = "etcd Version: $ETCD_VERSION" ] ;;
        kube-apiserver) out="$("$BIN/kube-apiserver" --version 2>/dev/null)" || return 1
              [ "${out%%$'\n'*}" = "Kubernetes v$K8S_VERSION" ] ;;
        kubectl) out="$("$BIN/kubectl" version --client 2>/dev/null)" || return 1
              [ "${out%%$'\n'*}" = "Client Version: v$K8S_VERSION" ] ;;
    esac
}

missing() {
    local m=()
    for b in etcd kube-apiserver kubectl; do
        if [ "$REBUILD" = 1 ] || [ ! -x "$BIN/$b" ] || ! have "$b"; then m+=("$b"); fi
    done
    echo "${m[*]}"
}

if [ -z "$(missing)" ]; then
    echo "$BIN"
    exit 0
fi

command -v go >/dev/null 2>&1 || PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null 2>&1 || die "Go is needed to build the control plane (go 1.26+ on PATH)"

mkdir -p "$BIN" "$SRC"
# One build at a time per cache: several test runs may start together.
exec 9>"$CACHE/.lock"
flock 9
TODO="$(missing)"
if [ -z "$TODO" ]; then
    echo "$BIN"
    exit 0
fi

export GOMODCACHE="$CACHE_ROOT/go/mod" GOCACHE="$CACHE_ROOT/go/build" GOPATH="$CACHE_ROOT/go"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
TMP="$(mktemp -d "$CACHE/tmp.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

build_etcd() {
    # A tiny main module: `go install go.etcd.io/etcd/server/v3@...` refuses etcd's own
    # go.mod (it has replace directives), so we require it and call etcdmain ourselves.
    local d="$SRC/etcd"
    mkdir -p "$d"
    cat >"$d/go.mod" <<EOF
module example.invalid/etcdbin

go 1.26.0

require go.etcd.io/etcd/server/v3 v$ETCD_VERSION
EOF
    cat >"$d/main.go" <<'EOF'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
    (cd "$d" && go mod tidy && go build -trimpath -ldflags "-s -w" -o "$TMP/etcd" .)
    mv -f "$TMP/etcd" "$BIN/etcd"
}

# kubernetes' go.mod requires its ~33 staging modules at v0.0.0 and replaces them with
# ./staging/...; replaces in a dependency are ignored, so our main module replaces each
# with its published v0.X.Y twin. The list comes from the proxy's own copy of that go.mod.
prepare_kubernetes() {
    local d="$SRC/kubernetes" staging="v0.${K8S_VERSION#1.}"
    if [ -f "$d/go.mod" ] && grep -q "k8s.io/kubernetes v$K8S_VERSION" "$d/go.mod"; then
        return
    fi
    rm -rf "$d"
    mkdir -p "$d"
    cd "$d"
    go mod init example.invalid/kubebins >/dev/null 2>&1
    local gomod
    gomod="$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" \
        | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
    [ -f "$gomod" ] || die "cannot fetch k8s.io/kubernetes@v$K8S_VERSION's go.mod from the proxy"
    local m
    for m in $(sed -n 's|^[[:space:]]*\(k8s\.io/[A-Za-z0-9._-]*\) => \./staging/.*|\1|p' "$gomod"); do
        if go mod download "$m@$staging" >/dev/null 2>&1; then
            go mod edit -replace="$m=$m@$staging"
        else
            # Some staging modules (k8s.io/sample-cli-plugin) are not published; nothing we
            # build imports them, so a go.mod-only stub satisfies the module graph.
            log "$m@$staging is not on the proxy: using a local stub"
            mkdir -p "stub/$m"
            printf 'module %s\n\ngo 1.24\n' "$m" >"stub/$m/go.mod"
            go mod edit -replace="$m=./stub/$m"
        fi
    done
    go mod edit -require="k8s.io/kubernetes@v$K8S_VERSION"
}

build_kubernetes() {
    local minor="${K8S_VERSION#1.}"
    minor="${minor%%.*}"
    # Without these the binaries report v0.0.0-master, which skew checks and
    # `kubectl version` read.
    local ldf="-s -w"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ldf="$ldf -X $pkg.gitVersion=v$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    done
    local pkgs=()
    for b in "$@"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
    (cd "$SRC/kubernetes" && go build -trimpath -ldflags "$ldf" -o "$TMP/" "${pkgs[@]}")
    for b in "$@"; do mv -f "$TMP/$b" "$BIN/$b"; done
}

start=$(date +%s)
kube=()
for b in $TODO; do
    case "$b" in
        etcd) log "building etcd v$ETCD_VERSION"; build_etcd ;;
        *) kube+=("$b") ;;
    esac
done
if [ "${#kube[@]}" -gt 0 ]; then
    log "building ${kube[*]} v$K8S_VERSION (a cold build takes several minutes)"
    (prepare_kubernetes)
    build_kubernetes "${kube[@]}"
fi
REBUILD=0
left="$(missing)"
[ -z "$left" ] || die "built, but these do not report the pinned version: $left"
log "built $TODO in $(( $(date +%s) - start ))s into $BIN"
echo "$BIN"
