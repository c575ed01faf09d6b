#!/usr/bin/env bash
# Builds what the real-camera lane runs on (ci/realcam/README.md):
#   - libcamera from ../shared/vendor/libcamera (checked against its SHA256SUMS), with
#     only the virtual pipeline handler and the Python bindings, patched with
#     virtual-handler.patch, installed into a prefix cached at a fixed path keyed on
#     everything that goes into it ($HOME/.cache/trapd/realcam-<key>/);
#   - the DMA-heap LD_PRELOAD shim (dmaheap_shim.c) into that prefix;
#   - the venv .venv-realcam: the real picamera2 from PyPI, this repo (-e .[sim,test]),
#     the prefix's libcamera bindings and our pykms stub on its path.
# Re-running with both in place takes a second or two.
set -euo pipefail
source "$(dirname "$0")/common.sh"

[[ -f $TARBALL ]] || die "$TARBALL not found: the lane needs ../shared beside the repo"

apt_install_missing() {
    local missing=() p
    for p in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    [[ $(id -u) == 0 ]] || die "missing Debian packages (install them as root): ${missing[*]}"
    say "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

build_libcamera() {
    local work log tools
    work=$(mktemp -d "${TMPDIR:-/tmp}/trapd-realcam-build.XXXXXX")
    log=$CACHE/realcam-$KEY.build.log
    trap "rm -rf '$work'" EXIT # runs in the locked subshell below
    : >"$log"
    say "building libcamera into $PREFIX (log: $log)"
    (cd "$VENDOR" && sha256sum --check --quiet SHA256SUMS) || die "$TARBALL does not match $VENDOR/SHA256SUMS"

    tools=$CACHE/realcam-buildtools-py$PY_MINOR
    if ! "$tools/bin/python" -m pip --version >/dev/null 2>&1 \
        || [[ $(cat "$tools/.pins" 2>/dev/null) != "${BUILD_TOOLS[*]}" ]]; then
        rm -rf "$tools"
        "$PYTHON" -m venv "$tools" >>"$log" 2>&1 &&
            "$tools/bin/pip" install --quiet "${BUILD_TOOLS[@]}" >>"$log" 2>&1 ||
            { tail -n 20 "$log" >&2; die "could not install the build tools (log: $log)"; }
        echo "${BUILD_TOOLS[*]}" >"$tools/.pins"
    fi

    rm -rf "$PREFIX"
    tar -xJf "$TARBALL" -C "$work"
    local src=("$work"/libcamera-*)
    (cd "$src" && patch -p1 --quiet <"$PATCH") || die "virtual-handler.patch does not apply"
    {
        PATH=$tools/bin:$PATH meson setup "$work/build" "$src" --prefix="$PREFIX" \
            "${MESON_OPTIONS[@]}" &&
            PATH=$tools/bin:$PATH ninja -C "$work/build" -j"$(nproc)" &&
            PATH=$tools/bin:$PATH meson install -C "$work/build" --quiet
    } >>"$log" 2>&1 || { tail -n 40 "$log" >&2; die "libcamera build failed (log: $log)"; }

    gcc -shared -fPIC -O2 -Wall -o "$SHIM_SO" "$SHIM" -ldl || die "shim build failed"
    [[ -f $SITE/libcamera/__init__.py ]] || die "no Python bindings in $SITE"
    touch "$STAMP"
}

# Runs a command with its output in the venv log, shown only if it fails.
logged() {
    "$@" >>"$VENV_LOG" 2>&1 || { tail -n 40 "$VENV_LOG" >&2; die "failed: $* (log: $VENV_LOG)"; }
}

make_venv() {
    local want have
    want="$KEY $PICAMERA2 $(sha256sum "$REPO/pyproject.toml" | cut -c1-16)"
    have=$(cat "$VENV/.realcam-stamp" 2>/dev/null || true)
    if [[ $want == "$have" && -x $VENV/bin/python ]]; then
        say "venv $VENV up to date"
        return
    fi
    VENV_LOG=$CACHE/realcam-venv.log
    say "setting up $VENV ($PICAMERA2, trapd -e .[sim,test]; log: $VENV_LOG)"
    : >"$VENV_LOG"
    rm -f "$VENV/.realcam-stamp"
    [[ -x $VENV/bin/python ]] || logged "$PYTHON" -m venv "$VENV"
    logged "$VENV/bin/pip" install --quiet --upgrade pip
    # picamera2 compiles PiDNG and python-prctl (libcap-dev); av, OpenEXR come as wheels.
    logged "$VENV/bin/pip" install --quiet "$PICAMERA2"
    logged "$VENV/bin/pip" install --quiet -e "$REPO[sim,test]"
    local purelib
    purelib=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
    # The built bindings (not on PyPI) and the pykms stub (picamera2 imports it always).
    printf '%s\n' "$SITE" >"$purelib/trapd-realcam-libcamera.pth"
    printf '%s\n' "$HERE/stubs" >"$purelib/trapd-realcam-stubs.pth"
    LD_LIBRARY_PATH=$PREFIX/lib "$VENV/bin/python" -c 'import libcamera, picamera2' \
        || die "import libcamera, picamera2 fails in $VENV"
    echo "$want" >"$VENV/.realcam-stamp"
}

mkdir -p "$CACHE"
apt_install_missing
(
    # One build at a time per key (two checkouts may share the cache).
    flock 9
    if [[ -f $STAMP ]]; then
        say "restoring cached libcamera build $PREFIX"
    else
        build_libcamera
    fi
) 9>"$CACHE/realcam-$KEY.lock"
make_venv
