#!/usr/bin/env bash
# Install pybpfman on Debian 12 and either start the daemon or run the tests.
#
#   bash scripts/setup.sh daemon   # install system-wide, start the daemon with its defaults
#   bash scripts/setup.sh test     # install into ./.venv and run every test tier
#   bash scripts/setup.sh test tests/unit -q   # the same install, then only these pytest args
#
# Run as root from a checkout. Both are idempotent.
set -euo pipefail

MODE="${1:-}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CONSTRAINTS="$ROOT/requirements/constraints.txt"
# Debian's python3: python3-bpfcc installs the real `bcc` module for it only.
PYTHON=/usr/bin/python3

APT_PACKAGES=(
    python3 python3-venv python3-dev python3-bpfcc
    clang llvm libbpf-dev libbpf1 bpftool xdp-tools
    iproute2 iputils-ping socat kmod util-linux
)
# Only the tests need these: a local OCI registry (started by the tests on
# 127.0.0.1 only), an independent image client, gcc for uprobe targets,
# systemd-analyze (rates the unit; systemd need not run) and useradd (the
# README quick start test makes a throwaway user).
# libseccomp2 (a dependency of systemd): the unit's syscall filter in tests.
TEST_PACKAGES=(docker-registry skopeo gcc systemd passwd libseccomp2)

log() { printf '==> %s\n' "$*" >&2; }

need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup.sh: run as root (it installs packages and loads eBPF programs)" >&2
        exit 1
    fi
}

apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        log "apt-get install ${missing[*]}"
        apt-get update -q
        apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
}

# make_venv DIR [pip install args...]: a venv where `import bcc` works.
make_venv() {
    local venv="$1"; shift
    [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip setuptools -c "$CONSTRAINTS"
    "$venv/bin/pip" install -q -c "$CONSTRAINTS" "$@"
    # Expose only Debian's bcc package to the venv, not all of dist-packages.
    local site
    site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
    ln -sfn /usr/lib/python3/dist-packages/bcc "$site/bcc"
    "$venv/bin/python" -c 'import bcc, bpfman' || { echo "setup.sh: venv check failed" >&2; exit 1; }
}

install_daemon() {
    local prefix=/opt/pybpfman
    make_venv "$prefix/venv" "$ROOT"
    ln -sfn "$prefix/venv/bin/bpfman" /usr/local/bin/bpfman
    # The README, docs and examples where every user can read them (the
    # checkout may be in root's home): the quick start copies from here.
    install -d -m 0755 "$prefix"
    install -m 0644 "$ROOT/README.md" "$prefix/README.md"
    rm -rf "$prefix/docs" "$prefix/examples"
    cp -r "$ROOT/docs" "$ROOT/examples" "$prefix/"
    chmod -R a+rX "$prefix/docs" "$prefix/examples"
    install -d -m 0755 /etc/bpfman
    [ -e /etc/bpfman/bpfman.toml ] || install -m 0644 "$ROOT/docs/bpfman.toml.example" /etc/bpfman/bpfman.toml
    if [ -d /run/systemd/system ]; then
        install -m 0644 "$ROOT/packaging/bpfman.service" "$ROOT/packaging/bpfman.socket" \
            /etc/systemd/system/
        install -m 0644 "$ROOT/packaging/bpfman-tmpfiles.conf" /usr/lib/tmpfiles.d/bpfman.conf
        systemd-tmpfiles --create bpfman.conf
        systemctl daemon-reload
        systemctl enable --now bpfman.socket bpfman.service
    elif ! bpfman info >/dev/null 2>&1; then
        # No systemd (containers, minimal VMs): run it in the background.
        log "starting bpfman daemon in the background (log: /var/log/bpfman.log)"
        nohup /usr/local/bin/bpfman daemon >>/var/log/bpfman.log 2>&1 &
    fi
    for _ in $(seq 1 100); do
        bpfman info >/dev/null 2>&1 && break
        sleep 0.1
    done
    bpfman info
}

# Editable installs put an import hook in a .pth file, run by every Python
# start: pathlib, importlib.util and three finders, 14 ms before the first
# line (docs/performance.md, "CLI start-up"). The packages' source roots as
# plain .pth lines import the same packages (the finders only map each to
# its directory) and cost nothing.
plain_editable_paths() {
    "$1/bin/python" - <<'PY'
import importlib, pathlib, sysconfig
for pth in pathlib.Path(sysconfig.get_path("purelib")).glob("__editable__.*.pth"):
    text = pth.read_text()
    if text.startswith("import __editable___"):
        finder = importlib.import_module(text.split()[1].rstrip(";"))
        roots = sorted({str(pathlib.Path(p).parent) for p in finder.MAPPING.values()})
        pth.write_text("".join(f"{root}\n" for root in roots))
PY
}

run_tests() {
    local venv="$ROOT/.venv"
    make_venv "$venv" -e "$ROOT[test]" -e "$ROOT/tests/thirdparty/bpfman_raw_tracepoint" \
        -e "$ROOT/operator"
    plain_editable_paths "$venv"
    bash "$ROOT/scripts/vm-kernel.sh" "$venv"
    # etcd, kube-apiserver and kubectl for tests/k8s (cached; a cold build takes minutes).
    BPFMAN_K8S_BIN="$(bash "$ROOT/scripts/k8s-control-plane.sh")"
    # Missing binaries fail the k8s tests instead of skipping them.
    export BPFMAN_K8S_BIN BPFMAN_K8S_REQUIRED=1
    cd "$ROOT"
    log "ruff"
    "$venv/bin/ruff" check .
    log "import contracts"
    "$venv/bin/lint-imports" --no-cache
    log "pytest (unit, kernel, vm and k8s tiers)"
    "$venv/bin/pytest" -ra "${@:-tests}"
}

case "$MODE" in
    daemon) need_root; apt_install "${APT_PACKAGES[@]}"; install_daemon ;;
    test)
        need_root
        apt_install "${APT_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
        # The package's own service would listen on :5000 on every interface.
        if [ -d /run/systemd/system ]; then
            systemctl disable --now docker-registry.service >/dev/null 2>&1 || true
        fi
        shift
        run_tests "$@"
        ;;
    *) echo "usage: $0 daemon|test [pytest args]" >&2; exit 2 ;;
esac
