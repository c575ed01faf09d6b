"""`trapd --version`, and the progress line (rate, ETA) export and offload show
on a terminal, and only there."""

import io
import os
import pty
import re
import subprocess
from importlib.metadata import version

from conftest import TRAPD_CLI, copy_queue, trapd
from trapd.progress import Progress


def test_version_comes_from_the_package_metadata():
    result = trapd("--version")
    assert result.stdout.strip() == f"trapd {version('trapd')}"


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_gets_one_line_rewritten_with_rate_and_eta_then_a_summary():
    times = iter([0.0, 1.0, 2.0, 3.0, 4.0, 4.0])
    screen = Terminal()
    progress = Progress(screen, "export", clock=lambda: next(times))
    for _ in progress.track(["a.jpg", "b.jpg", "c.jpg", "d.jpg"], size=lambda _: 2 * 1024 * 1024):
        pass
    lines = screen.getvalue().split("\n")
    assert lines[0] == "export: 4 images to copy"
    redraws = lines[1].split("\r")[1:]
    assert redraws[0].startswith("export: 1/4 images 1.0 images/s, 2.0 MB/s, ETA 0:03 a.jpg")
    assert redraws[2].startswith("export: 3/4 images 1.0 images/s, 2.0 MB/s, ETA 0:01 c.jpg")
    assert redraws[-1] == "export: 4/4 images in 0:04 (1.0 images/s, 2.0 MB/s)"
    assert lines[2:] == [""]


def test_not_on_a_terminal_export_prints_no_progress(sim_queue, tmp_path):
    sim = sim_queue("default")
    out = trapd("export", "--camtrap-dp", tmp_path / "p", "--storage", sim["storage"]).stdout
    assert "\r" not in out and "images/s" not in out and "ETA" not in out


def on_a_terminal(*args) -> str:
    """What `trapd ARGS` prints with its stdout on a pseudo-terminal."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(TRAPD_CLI + [str(a) for a in args], stdout=follower,
                               stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 1 << 16)
        except OSError:   # EIO: the process closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    assert process.wait(timeout=300) == 0, out.decode(errors="replace")
    return out.decode().replace("\r\n", "\n")   # the terminal's own newline translation


def test_export_and_offload_show_rate_and_eta_on_a_terminal(sim_queue, tmp_path):
    storage = copy_queue(sim_queue("default")["storage"], tmp_path / "card")
    total = len(list((storage / "images").rglob("*.jpg")))
    drive = tmp_path / "drive"
    drive.mkdir()
    for label, args in (("export", ("export", "--camtrap-dp", tmp_path / "p", "--storage", storage)),
                        ("offload", ("offload", drive, "--storage", storage))):
        screen = on_a_terminal(*args)
        assert re.search(rf"\r{label}: {total}/{total} images [\d.]+ images/s, [\d.]+ MB/s, "
                         r"ETA 0:00", screen), screen
        assert re.search(rf"\r{label}: {total}/{total} images in \d+:\d\d", screen), screen
