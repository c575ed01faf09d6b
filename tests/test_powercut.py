"""The power-cut harness in CI: 25 SIGKILLs during bursts, zero committed
images lost, zero truncated or temporary files reachable."""

import re
import subprocess
import sys

from conftest import REPO


def test_25_kills_during_bursts_lose_no_committed_image():
    result = subprocess.run([sys.executable, str(REPO / "bench" / "powercut.py"),
                             "--cycles", "25", "--seed", "7"],
                            capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    counts = dict(re.findall(r"^\| ([^|]+?) \| (\d+) \|", result.stdout, re.M))
    assert counts["SIGKILL cycles"] == "25"
    assert int(counts["kills during an open event"]) >= 20      # the kills land in bursts
    assert int(counts["committed images checked at the end"]) > 25
    assert counts["committed images lost"] == "0"
    assert counts["verify problems / truncated files reachable"] == "0"
