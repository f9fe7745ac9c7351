#!/usr/bin/env bash
# Prepare the VM test tier (tests/vm): qemu, busybox, Debian's newest generic 6.12
# kernel with uncompressed modules, and virtme-ng in the given virtualenv.
# Idempotent: a second run only checks. Prints the kernel image path on the last line.
#
# Usage: scripts/vm-kernel.sh VENV_DIR    (as root, Debian bookworm)
set -euo pipefail

VIRTME_NG_VERSION=1.42   # the version the VM tier was built and measured with
ARGCOMPLETE_VERSION=3.7.2  # its one unpinned dependency (requests is in constraints.txt)

venv=${1:?usage: $0 VENV_DIR}
[[ -x "$venv/bin/pip" ]] || { echo "vm-kernel: no pip in $venv" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "vm-kernel: must run as root (apt-get, /lib/modules)" >&2; exit 2; }

export DEBIAN_FRONTEND=noninteractive
log() { echo "vm-kernel: $*" >&2; }

# Newest generic-flavour 6.12 package. The cloud flavour has no 9p (root mount fails
# inside the VM) and rt is not what users run, so only plain "-amd64-unsigned".
newest_kernel_pkg() {
    apt-cache search --names-only '^linux-image-6\.12\.[0-9]+\+deb[0-9]+-amd64-unsigned$' \
        | awk '{print $1}' | sort -V | tail -n 1
}

missing_pkgs() {
    local p
    for p in qemu-system-x86 busybox-static xz-utils kmod "$pkg"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || echo "$p"
    done
}

resolve() {
    pkg=$(newest_kernel_pkg || true)
    # linux-image-6.12.117+deb12-amd64-unsigned -> 6.12.117+deb12-amd64
    kver=${pkg#linux-image-}
    kver=${kver%-unsigned}
}

resolve
if [[ -z "$pkg" ]]; then
    # A fresh machine has empty package lists until the first update.
    log "no 6.12 kernel package known to apt; running apt-get update"
    apt-get update -q >&2
    resolve
fi
[[ -n "$pkg" ]] || { log "apt knows no linux-image-6.12.*-amd64-unsigned package"; exit 1; }

mapfile -t need < <(missing_pkgs)
if ((${#need[@]})); then
    log "installing ${need[*]}"
    if ! apt-get install -y -q --no-install-recommends "${need[@]}" >&2; then
        # Stale lists name versions the mirror no longer has: refresh, resolve again.
        apt-get update -q >&2
        resolve
        mapfile -t need < <(missing_pkgs)
        apt-get install -y -q --no-install-recommends "${need[@]}" >&2
    fi
fi

moddir=/lib/modules/$kver
[[ -d "$moddir" ]] || { log "$moddir missing after installing $pkg"; exit 1; }

# busybox insmod (virtme-ng's init) cannot read .ko.xz: decompress once, then depmod
# so modules.dep names the .ko files.
if [[ -n $(find "$moddir" -name '*.ko.xz' -print -quit) ]]; then
    log "decompressing modules of $kver"
    find "$moddir" -name '*.ko.xz' -print0 | xargs -0 -r -n 200 -P "$(nproc)" unxz -f
    depmod "$kver"
elif [[ ! -s "$moddir/modules.dep" ]] || grep -q '\.ko\.xz' "$moddir/modules.dep"; then
    depmod "$kver"
fi

if ! "$venv/bin/python" -c 'import sys, importlib.metadata as m; sys.exit(m.version("virtme-ng") != sys.argv[1])' \
        "$VIRTME_NG_VERSION" 2>/dev/null; then
    log "installing virtme-ng==$VIRTME_NG_VERSION into $venv"
    constraints=$(dirname "$0")/../requirements/constraints.txt
    [[ -f "$constraints" ]] && set -- -c "$constraints" || set --
    "$venv/bin/pip" install -q "$@" \
        "virtme-ng==$VIRTME_NG_VERSION" "argcomplete==$ARGCOMPLETE_VERSION" >&2
fi
[[ -x "$venv/bin/vng" ]] || { log "vng missing from $venv/bin"; exit 1; }

kernel=/boot/vmlinuz-$kver
[[ -r "$kernel" ]] || { log "$kernel missing"; exit 1; }
echo "$kernel"
