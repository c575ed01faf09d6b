# Sourced by ci/realcam/build.sh and run.sh: paths and the cache key of the lane's
# libcamera build. Nothing here builds or installs anything.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$REPO/ci/realcam
VENDOR=${TRAPD_LIBCAMERA_VENDOR:-$REPO/../shared/vendor/libcamera}
TARBALL_NAME=libcamera-26bfadc6.tar.xz
TARBALL=$VENDOR/$TARBALL_NAME
PATCH=$HERE/virtual-handler.patch
SHIM=$HERE/dmaheap_shim.c
PYTHON=${PYTHON:-python3}
CACHE=${TRAPD_REALCAM_CACHE:-$HOME/.cache/trapd}
VENV=$REPO/.venv-realcam
PICAMERA2=picamera2==0.3.38

# libcamera with only the virtual pipeline handler and the Python bindings.
MESON_OPTIONS=(--buildtype=release --libdir=lib
    -Dpipelines=virtual -Dipas= -Dcam=disabled -Dqcam=disabled -Dgstreamer=disabled
    -Dlc-compliance=disabled -Dtest=false -Ddocumentation=disabled -Dpycamera=enabled
    -Dv4l2=disabled -Dwerror=false -Dtracing=disabled -Dudev=enabled -Drpi-awb-nn=disabled
    -Dsoftisp-gpu=disabled -Dlibunwind=disabled -Dlibdw=disabled -Dapps-output-dng=disabled)
# Build tools, pinned: pybind11 3.x breaks global_camera_info() (pybind/pybind11#6064).
BUILD_TOOLS=(meson==1.12.1 ninja==1.13.2 jinja2==3.1.6 ply==3.11 pyyaml==6.0.4 pybind11==2.13.6)
# Debian packages: libudev-dev (libcamera's device enumerator), libyuv-dev (the handler's
# scaling; meson's fallback would download it), libcap-dev (picamera2's python-prctl),
# libarchive13 (picamera2's libarchive-c loads it when imported).
APT_PACKAGES=(libudev-dev libyuv-dev libcap-dev libgnutls28-dev libjpeg-dev libyaml-dev
    pkg-config gcc g++ python3-dev patch xz-utils libarchive13)

PY_MINOR=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')

realcam_key() {
    local os
    os=$(. /etc/os-release && echo "${ID:-}-${VERSION_ID:-}")
    {
        sha256sum "$TARBALL" "$PATCH" "$SHIM" | cut -d' ' -f1
        echo "${MESON_OPTIONS[*]}"
        echo "${BUILD_TOOLS[*]}"
        echo "$os python$PY_MINOR $(uname -m)"
    } | sha256sum | cut -c1-12
}

# Set only when the vendored tarball is there (build.sh checks and says so).
if [[ -f $TARBALL ]]; then
    KEY=$(realcam_key)
    PREFIX=$CACHE/realcam-$KEY
    STAMP=$PREFIX/.complete
    SITE=$PREFIX/lib/python$PY_MINOR/site-packages
    SHIM_SO=$PREFIX/lib/libdmaheap_shim.so
    VIRTUAL_YAML=$PREFIX/share/libcamera/pipeline/virtual/virtual.yaml
fi

say() { echo "realcam: $*"; }
die() { echo "realcam: ERROR: $*" >&2; exit 1; }
