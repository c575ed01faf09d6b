"""What the setup page costs the trap while a phone keeps it open: CPU as a share
of one core of the page process (`trapd setup-page`) and of the daemon, with no
browser and then with headless Chromium showing the page (live view polling a few
frames a second, the walk-test event stream open), in the same run.

    .venv/bin/python bench/setup_page_cost.py [--seconds 20]

The daemon is `trapd sim --realtime` on a quiet daylight scene (no animal, no PIR
edge): its "no browser" figure is the trap's own idle cost, plus the simulator
rendering the scene, which a Pi's camera does in hardware. The daemon's extra cost
with the page open is copying and JPEG-encoding the live view. Needs Debian's
chromium and chromium-driver; prints a table, asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from trapd.config import DEFAULT_CONFIG_PATH, merge_settings
from trapd.setup.secret import create_secret

TICKS = os.sysconf("SC_CLK_TCK")
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def share_of_one_core(pids: dict[str, int], seconds: float) -> dict[str, float]:
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    start = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - start
    return {name: (cpu_seconds(pid) - before[name]) / elapsed for name, pid in pids.items()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_files(folder: Path, port: int, main_size: list[int] | None) -> tuple[Path, Path, str]:
    secret, _ = create_secret(folder / "setup-secret")
    settings = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    if main_size:
        settings = merge_settings(settings, {"hardware": {"camera": {"main_size": main_size}}})
    settings = merge_settings(settings, {
        "storage": {"root": str(folder / "storage"), "min_free_mb": 0},
        "setup": {"enabled": True, "bind_address": "127.0.0.1", "port": port,
                  "secret_file": str(folder / "setup-secret"),
                  "link_socket": str(folder / "setup.sock")}})
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump(settings))
    scenario = folder / "quiet.yaml"
    scenario.write_text(yaml.safe_dump({
        "name": "quiet", "description": "an empty trail by day, light wind",
        "duration_s": 3600, "seed": 7, "start_time": "2026-11-26T11:00:00+10:00",
        "conditions": [{"from_s": 0, "light": "day", "wind": 0.3}], "animals": []}))
    return config, scenario, secret


def start(folder: Path, *args: str) -> subprocess.Popen:
    log = (folder / f"{args[0]}.log").open("w")
    return subprocess.Popen([sys.executable, "-m", "trapd.cli", *args], stdout=log,
                            stderr=subprocess.STDOUT)


def wait_for_port(port: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"the setup page did not open on port {port}")


def open_browser(url: str, secret: str, profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.get(url + "/login")
    driver.find_element(By.ID, "secret").send_keys(secret)
    driver.find_element(By.ID, "login").click()
    return driver


def frames_shown(driver) -> int:
    return int(driver.execute_script(
        "return Number(document.getElementById('view').dataset.seq || 0)"))


def view_frame_ms(main_size, repeats: int = 30) -> float:
    """trapd's own work per live-view frame (trapd/setup/preview.py): copy every
    n-th pixel of the main YUV420 image where the camera maps it, then resize
    and JPEG-encode that."""
    import numpy as np
    from trapd.camera import yuv420_planes
    from trapd.setup.preview import PREVIEW_SOURCE_WIDTH, encode_small
    width, height = main_size
    mapped = np.random.default_rng(1).integers(0, 255, (height * 3 // 2, width), np.uint8)
    step = max(1, width // PREVIEW_SOURCE_WIDTH)

    def one_frame() -> None:
        planes = tuple(np.ascontiguousarray(p[::step, ::step])
                       for p in yuv420_planes(mapped, width, height))
        encode_small(planes, 640)

    one_frame()
    start = time.perf_counter()
    for _ in range(repeats):
        one_frame()
    return (time.perf_counter() - start) / repeats * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20, help="length of each phase")
    parser.add_argument("--main", metavar="WxH", help="camera main stream size (default: the "
                        "shipped config's); the live view is made from it")
    args = parser.parse_args()
    main_size = [int(n) for n in args.main.split("x")] if args.main else None
    with tempfile.TemporaryDirectory(prefix="trapd-setup-bench-") as tmp:
        folder = Path(tmp)
        port = free_port()
        config, scenario, secret = write_files(folder, port, main_size)
        shown_size = yaml.safe_load(config.read_text())["hardware"]["camera"]["main_size"]
        sim = start(folder, "sim", str(scenario), "--realtime", "--config", str(config))
        page = start(folder, "setup-page", "--config", str(config))
        driver = None
        try:
            wait_for_port(port)
            time.sleep(3)                       # past start-up
            pids = {"daemon (trapd sim)": sim.pid, "page (trapd setup-page)": page.pid}
            closed = share_of_one_core(pids, args.seconds)
            driver = open_browser(f"http://127.0.0.1:{port}", secret, folder / "profile")
            time.sleep(3)
            first = frames_shown(driver)
            opened = share_of_one_core(pids, args.seconds)
            rate = (frames_shown(driver) - first) / args.seconds
        finally:
            if driver is not None:
                driver.quit()
            for process in (page, sim):
                process.send_signal(signal.SIGTERM)
            for process in (page, sim):
                process.wait(60)
    print_table(closed, opened, rate, args.seconds, shown_size)
    ms = view_frame_ms(shown_size)
    print(f"of the daemon's extra: trapd's subsampled copy + resize + JPEG {ms:.1f} ms a frame, "
          f"{ms * rate / 10:.1f}% of a core at {rate:.1f} frames/s; the rest is the simulator "
          "rendering the main stream (a Pi's ISP does that)")


def print_table(closed: dict, opened: dict, rate: float, seconds: float, main_size) -> None:
    print(f"CPU, share of one core, {seconds:g} s each; main stream {main_size[0]}x{main_size[1]}, "
          f"live view at {rate:.1f} frames/s while open")
    print(f"{'process':<26}{'no browser':>12}{'page open':>12}{'extra':>10}")
    for name in closed:
        print(f"{name:<26}{closed[name]:>11.1%}{opened[name]:>12.1%}"
              f"{opened[name] - closed[name]:>+10.1%}")
    total_closed, total_open = sum(closed.values()), sum(opened.values())
    print(f"{'both':<26}{total_closed:>11.1%}{total_open:>12.1%}"
          f"{total_open - total_closed:>+10.1%}")
    print("(daemon, no browser = the trap idle in the simulator, scene rendering included)")


if __name__ == "__main__":
    main()
