#!/bin/bash
# Build (once) the damoncore test-VM kernel and print the path of its bzImage.
#
#   vm/build-kernel.sh            # build or reuse; last stdout line = bzImage path
#   vm/build-kernel.sh --print    # print the cache path only (no build, exit 1 if absent)
#
# Source: Debian's linux-source-6.12 package (installed via apt when missing),
# configured from x86_64_defconfig + kvm_guest.config + vm/kernel.config.
# Cache: ${XDG_CACHE_HOME:-~/.cache}/damoncore-vm/<hash(fragment, source version, recipe)>/bzImage
# Env: DAMONCORE_VM_JOBS (default 2), DAMONCORE_VM_NICE (default 10),
#      DAMONCORE_VM_KEEP_TREE=1 keeps the build tree (about 1.5 GB).
set -euo pipefail

RECIPE=3   # bump when this script's build steps change the resulting kernel
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FRAG="$HERE/kernel.config"
SRCPKG=${DAMONCORE_VM_SRCPKG:-linux-source-6.12}
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/damoncore-vm"
JOBS=${DAMONCORE_VM_JOBS:-2}
NICE=${DAMONCORE_VM_NICE:-10}

log() { echo "[build-kernel $(date +%T)] $*" >&2; }

srcver() { dpkg-query -W -f='${Version}' "$SRCPKG" 2>/dev/null || true; }

apt_install() {
    log "apt-get install $*"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq "$@" >&2; then
        apt-get update -qq >&2
        apt-get install -y -qq "$@" >&2
    fi
}

cache_dir() {
    local ver=$1
    local h
    h=$( { cat "$FRAG"; echo "src=$SRCPKG $ver recipe=$RECIPE"; } | sha256sum | cut -c1-16)
    echo "$CACHE_ROOT/$h"
}

if [[ "${1:-}" == "--print" ]]; then
    ver=$(srcver)
    [[ -n "$ver" ]] || exit 1
    d=$(cache_dir "$ver")
    [[ -f "$d/bzImage" ]] || exit 1
    echo "$d/bzImage"
    exit 0
fi

ver=$(srcver)
if [[ -z "$ver" ]]; then
    apt_install "$SRCPKG"
    ver=$(srcver)
fi
DIR=$(cache_dir "$ver")
if [[ -f "$DIR/bzImage" ]]; then
    echo "$DIR/bzImage"
    exit 0
fi

mkdir -p "$DIR"
exec 9>"$DIR/.lock"
log "waiting for build lock $DIR/.lock"
flock 9
if [[ -f "$DIR/bzImage" ]]; then   # built by a concurrent caller
    echo "$DIR/bzImage"
    exit 0
fi

missing=()
for p in build-essential bison flex libelf-dev dwarves bc libssl-dev xz-utils; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
((${#missing[@]} == 0)) || apt_install "${missing[@]}"

t0=$(date +%s)
TREE="$DIR/tree"
rm -rf "$TREE"
mkdir -p "$TREE"
TARBALL=$(dpkg -L "$SRCPKG" | grep -E '/usr/src/linux-source-[^/]*\.tar\.(xz|bz2|gz)$' | head -1)
log "extracting $TARBALL (source $SRCPKG $ver) into $TREE"
tar -xf "$TARBALL" -C "$TREE" --strip-components=1
cd "$TREE"
t1=$(date +%s)
log "extracted in $((t1 - t0)) s; configuring"

make -s x86_64_defconfig >&2
make -s kvm_guest.config >&2
args=()
while IFS= read -r line; do
    line=${line%%#*}; line=$(echo "$line" | tr -d '[:space:]')
    [[ -z "$line" ]] && continue
    key=${line%%=*}; val=${line#*=}; key=${key#CONFIG_}
    case "$val" in
        y) args+=(--enable "$key") ;;
        n) args+=(--disable "$key") ;;
        m) args+=(--module "$key") ;;
        \"*) args+=(--set-str "$key" "$(echo "$val" | tr -d '"')") ;;
        *) args+=(--set-val "$key" "$val") ;;
    esac
done < "$FRAG"
# Apply twice around olddefconfig: some options only become visible once
# their dependencies from the first pass are in.
scripts/config "${args[@]}"
make -s olddefconfig >&2
scripts/config "${args[@]}"
make -s olddefconfig >&2

bad=0
while IFS= read -r line; do
    line=${line%%#*}; line=$(echo "$line" | tr -d '[:space:]')
    [[ -z "$line" ]] && continue
    key=${line%%=*}; val=${line#*=}
    if [[ "$val" == y ]] && ! grep -qx "$key=y" .config; then
        log "ERROR: $key=y requested but olddefconfig dropped it"; bad=1
    fi
    if [[ "$val" == n ]] && grep -qE "^$key=[ym]" .config; then
        log "WARNING: $key still set (selected by something else)"
    fi
done < "$FRAG"
((bad == 0)) || exit 1
cp .config "$DIR/config"

log "building bzImage: nice -n $NICE make -j$JOBS (log: $DIR/build.log)"
if ! nice -n "$NICE" make -j"$JOBS" bzImage >"$DIR/build.log" 2>&1; then
    tail -40 "$DIR/build.log" >&2
    log "ERROR: kernel build failed"
    exit 1
fi
t2=$(date +%s)
cp arch/x86/boot/bzImage "$DIR/bzImage.tmp"
mv "$DIR/bzImage.tmp" "$DIR/bzImage"
echo "source=$SRCPKG $ver extract_s=$((t1 - t0)) build_s=$((t2 - t1)) size=$(stat -c %s "$DIR/bzImage")" > "$DIR/times"
log "built in $((t2 - t1)) s: $(cat "$DIR/times")"
cd "$DIR"
[[ "${DAMONCORE_VM_KEEP_TREE:-0}" == 1 ]] || rm -rf "$TREE"
echo "$DIR/bzImage"
