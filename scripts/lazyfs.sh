#!/bin/bash
# Build LazyFS (a FUSE file system that drops unsynced data on command) from the
# team's vendored tarball and print the path of its binary.
#   scripts/lazyfs.sh          build once per tarball hash (cached), print the binary's path
#   SHARED=/path scripts/lazyfs.sh   use another shared folder (default: ../shared)
# The upstream source is unpacked into
#   ${XDG_CACHE_HOME:-$HOME/.cache}/trapd/lazyfs-<sha256 of the tarball>/
# and built there (again when this script changes). Two things differ from upstream:
# - its CMake fetches toml11 and spdlog from the internet with FetchContent; here
#   FETCHCONTENT_SOURCE_DIR_<NAME> points each fetch at a small CMake project that
#   finds Debian's libtoml11-dev / libspdlog-dev instead (no CMake file edited);
# - LazyFS (a47a5ba) has no statfs, so `df` on the mount shows 0 bytes free and
#   trapd, rightly, saves nothing below its floor. The unpacked copy gets a
#   statfs that asks the folder below (one declaration, one 3-line function).
# Exit status: 0 built (or cached), 2 ../shared missing, 3 a build dependency
# missing, 1 the build failed (one line names its log).
set -euo pipefail

HERE=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$HERE/../shared}
VENDOR=$SHARED/vendor/lazyfs
TARBALL=$VENDOR/lazyfs-a47a5ba.tar.xz

die() { echo "lazyfs.sh: $2" >&2; exit "$1"; }

[ -f "$TARBALL" ] || die 2 "$TARBALL not present (a clone without the team's shared folder)"

# Build dependencies (Debian packages, installed by .ci/run).
need_tool() { command -v "$1" >/dev/null || die 3 "$1 not installed (apt-get install $2)"; }
need_file() { [ -e "$1" ] || die 3 "$1 not found (apt-get install $2)"; }
need_tool cmake cmake
need_tool make make
need_tool g++ g++
need_tool tar tar
need_tool xz xz-utils
need_tool sha256sum coreutils
need_tool flock util-linux
need_tool fusermount3 fuse3
need_file /usr/include/fuse3/fuse.h libfuse3-dev
need_file /usr/include/toml.hpp libtoml11-dev
need_file /usr/include/spdlog/spdlog.h libspdlog-dev

SHA=$(sha256sum "$TARBALL" | cut -d' ' -f1)
if [ -f "$VENDOR/SHA256SUMS" ] && ! grep -q "^$SHA " "$VENDOR/SHA256SUMS"; then
    die 1 "$TARBALL does not match $VENDOR/SHA256SUMS"
fi

CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/trapd
DIR=$CACHE/lazyfs-$SHA
BIN=$DIR/src/lazyfs/build/lazyfs
mkdir -p "$CACHE"

RECIPE=$(sha256sum "$0" | cut -d' ' -f1)    # a changed recipe rebuilds

# One build at a time per tarball (two test processes may ask together).
exec 9>"$DIR.lock"
flock 9
if [ -x "$BIN" ] && [ "$(cat "$DIR/.built" 2>/dev/null)" = "$RECIPE" ]; then
    echo "$BIN"
    exit 0
fi

rm -rf "$DIR"
mkdir -p "$DIR/src" "$DIR/shim/toml" "$DIR/shim/spdlog"
LOG=$DIR/build.log
tar -xJf "$TARBALL" -C "$DIR/src" --strip-components=1

# Stand-ins for FetchContent's downloads: the system packages, as the targets
# libpcache's CMakeLists.txt links (toml11::toml11, spdlog).
cat >"$DIR/shim/toml/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.24)
project(toml_from_debian NONE)
find_package(toml11 3.7 REQUIRED GLOBAL)
EOF
cat >"$DIR/shim/spdlog/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.24)
project(spdlog_from_debian CXX)
find_package(spdlog 1.10 REQUIRED GLOBAL)
add_library(spdlog INTERFACE)
target_link_libraries(spdlog INTERFACE spdlog::spdlog)
EOF

# statfs passed through to the folder below (see the top of this file).
HPP=$DIR/src/lazyfs/include/lazyfs/lazyfs.hpp
sed -i 's|^\( *\)static int lfs_getattr (const char\*, struct stat\*, struct fuse_file_info\*);|&\n\1static int lfs_statfs (const char* path, struct statvfs* stbuf);|' "$HPP"
grep -q 'lfs_statfs' "$HPP" || die 1 "could not add statfs to $HPP (upstream changed?)"
cat >>"$DIR/src/lazyfs/src/lazyfs.cpp" <<'EOF'

// Added by trapd's scripts/lazyfs.sh: free space of the folder below.
int lazyfs::LazyFS::lfs_statfs (const char* path, struct statvfs* stbuf) {
    return statvfs (path, stbuf) == -1 ? -errno : 0;
}
EOF

# libpcache first (lazyfs links it from ../libs/libpcache/build), then lazyfs.
# lazyfs's own sources include spdlog: build them against the same shared
# spdlog (and its fmt) that libpcache uses.
if ! {
    cmake -S "$DIR/src/libs/libpcache" -B "$DIR/src/libs/libpcache/build" \
        -DCMAKE_BUILD_TYPE=Release \
        -DFETCHCONTENT_FULLY_DISCONNECTED=ON \
        -DFETCHCONTENT_SOURCE_DIR_TOML="$DIR/shim/toml" \
        -DFETCHCONTENT_SOURCE_DIR_SPDLOG="$DIR/shim/spdlog" &&
    cmake --build "$DIR/src/libs/libpcache/build" -j 2 &&
    cmake -S "$DIR/src/lazyfs" -B "$DIR/src/lazyfs/build" \
        -DCMAKE_BUILD_TYPE=Release \
        -DLAZYFS_BUILD_TESTS=OFF \
        -DCMAKE_CXX_FLAGS="-DSPDLOG_COMPILED_LIB -DSPDLOG_SHARED_LIB" \
        -DCMAKE_CXX_STANDARD_LIBRARIES="-lspdlog -lfmt" \
        -DCMAKE_BUILD_RPATH="$DIR/src/libs/libpcache/build" &&
    cmake --build "$DIR/src/lazyfs/build" -j 2
} >"$LOG" 2>&1; then
    die 1 "building LazyFS failed, see $LOG"
fi
[ -x "$BIN" ] || die 1 "no binary at $BIN after the build, see $LOG"
echo "$RECIPE" >"$DIR/.built"
echo "$BIN"
