#!/usr/bin/env bash
# The real-camera lane: trapd's tests/realcam on the REAL picamera2 0.3.38 and the REAL
# libcamera (virtual pipeline handler, patched), built by build.sh. `make realcam` runs it.
#   ci/realcam/run.sh [pytest args...]      e.g. ci/realcam/run.sh -k colour -x
#   ci/realcam/run.sh --bench [args...]     bench/trigger.py --real: hw_sim and the real stack
# Exits non-zero if the lane cannot be built or run, if a test fails, or if no test ran.
set -euo pipefail
source "$(dirname "$0")/common.sh"

"$HERE/build.sh"
[[ -f ${STAMP:-} ]] || die "no libcamera build"

# The replay cameras' JPEGs, made afresh every run, outside the repo.
export TRAPD_REALCAM_FRAMES=${TRAPD_REALCAM_FRAMES:-${TMPDIR:-/tmp}/trapd-realcam/frames}
"$VENV/bin/python" "$HERE/make_frames.py" "$TRAPD_REALCAM_FRAMES" "$REPO/../shared"

# The only place the virtual handler reads its cameras from (a path built into libcamera).
sed "s|@FRAMES@|$TRAPD_REALCAM_FRAMES|g" "$HERE/virtual.yaml.in" >"$VIRTUAL_YAML"

export TRAPD_REALCAM=1
export TRAPD_REALCAM_PREFIX=$PREFIX
export LD_PRELOAD=$SHIM_SO${LD_PRELOAD:+:$LD_PRELOAD}
export LD_LIBRARY_PATH=$PREFIX/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export LIBCAMERA_LOG_LEVELS=${LIBCAMERA_LOG_LEVELS:-*:ERROR}

if [[ ${1:-} == --bench ]]; then
    shift
    # The lane's camera 0 is the chart (picamera2 numbers cameras by Id, reversed).
    cd "$REPO" && exec "$VENV/bin/python" bench/trigger.py --real "$@"
fi

report=$(mktemp "${TMPDIR:-/tmp}/trapd-realcam-junit.XXXXXX.xml")
trap 'rm -f "$report"' EXIT
say "pytest -m realcam tests/realcam $*"
status=0
(cd "$REPO" && "$VENV/bin/python" -m pytest -q -m realcam --junitxml="$report" \
    tests/realcam "$@") || status=$?

# pytest exits 0 when every test was skipped: the lane must have run something.
ran=$("$VENV/bin/python" - "$report" <<'EOF' || echo 0
import sys, xml.etree.ElementTree as ET
suites = ET.parse(sys.argv[1]).getroot().iter("testsuite")
print(sum(int(s.get("tests", 0)) - int(s.get("skipped", 0)) for s in suites))
EOF
)
if ((status == 0 && ran == 0)); then
    die "no test ran"
fi
((status == 0)) || die "pytest exited $status"
say "tests ran: $ran"
