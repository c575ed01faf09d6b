"""What a user sees when something they did goes wrong (issue 13): one line
naming the file, never a traceback; Ctrl-C leaves nothing half-done; a
simulator run ended by a signal still says how it went."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import simplejpeg

from conftest import REPO, copy_queue, make_config
from hw_sim.run import run_scenario
from hw_sim.scenario import load_scenario
from trapd.cli import main


def one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    [line] = captured.err.splitlines()
    assert line.startswith("trapd: ")
    return line


# --- output files are checked before the work starts -----------------------------------


def test_snapshot_to_a_folder_that_does_not_exist_fails_before_the_camera_starts(capsys):
    assert main(["snapshot", "--sim", "/nonexistent/x.jpg"]) == 1

    line = one_error_line(capsys)
    assert "/nonexistent/x.jpg" in line and "no folder /nonexistent" in line


def test_sim_with_a_report_it_could_not_write_fails_before_the_run(tmp_path, capsys):
    storage = tmp_path / "storage"

    assert main(["sim", "wind", "--storage", str(storage), "--report", "/nonexistent/r.json"]) == 1

    line = one_error_line(capsys)
    assert "/nonexistent/r.json" in line
    assert not storage.exists()                          # the run never started


def test_sim_with_a_report_path_that_is_a_folder_fails_before_the_run(tmp_path, capsys):
    assert main(["sim", "wind", "--storage", str(tmp_path / "s"), "--report", str(tmp_path)]) == 1

    assert "is a directory" in one_error_line(capsys)


# --- eval-filter inputs ----------------------------------------------------------------------


def test_a_manifest_that_is_not_utf8_is_one_line_naming_it_and_the_line(tmp_path, capsys):
    manifest = tmp_path / "manifest.csv"
    manifest.write_bytes(b"file,sequence_id,frame_index,label\nimages/F\xf6hre.jpg,s1,0,animal\n")

    assert main(["eval-filter", str(manifest)]) == 1

    line = one_error_line(capsys)
    assert line.startswith(f"trapd: {manifest}:2: ") and "UTF-8" in line


def test_a_manifest_saved_by_a_spreadsheet_with_a_byte_order_mark_is_read(tmp_path):
    from trapd.evaluate import read_manifest
    image = tmp_path / "a.jpg"
    image.write_bytes(simplejpeg.encode_jpeg(np.zeros((48, 64, 3), np.uint8)))
    manifest = tmp_path / "manifest.csv"
    manifest.write_bytes("\ufefffile,sequence_id,frame_index,label\na.jpg,s1,0,empty\n".encode())

    [[row]] = read_manifest(manifest)

    assert row.file == image and row.label == "empty"


def _with_header_size(jpeg: bytes, width: int, height: int) -> bytes:
    """`jpeg` with its frame header (SOF0) claiming another size: decoding it
    would allocate for that size, reading its header costs nothing."""
    sof = jpeg.index(b"\xff\xc0")
    return (jpeg[:sof + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big")
            + jpeg[sof + 9:])


@pytest.mark.parametrize("kind", ["jpeg", "png"])
def test_an_image_too_large_to_decode_is_refused_naming_it_and_its_size(kind, tmp_path, capsys):
    small = simplejpeg.encode_jpeg(np.zeros((16, 16, 3), np.uint8))
    if kind == "jpeg":
        data = _with_header_size(small, 16000, 12000)
    else:
        import zlib
        ihdr = b"IHDR" + (16000).to_bytes(4, "big") + (12000).to_bytes(4, "big") + b"\x08\x02\0\0\0"
        data = (b"\x89PNG\r\n\x1a\n" + (13).to_bytes(4, "big") + ihdr
                + zlib.crc32(ihdr).to_bytes(4, "big"))
    image = tmp_path / f"huge.{'jpg' if kind == 'jpeg' else 'png'}"
    image.write_bytes(data)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"file,sequence_id,frame_index,label\n{image.name},s1,0,animal\n")

    assert main(["eval-filter", str(manifest)]) == 1

    line = one_error_line(capsys)
    assert str(image) in line and "16000x12000" in line and "192 megapixels" in line


def test_a_file_that_is_no_image_is_named(tmp_path, capsys):
    (tmp_path / "notes.jpg").write_text("not a photo")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("file,sequence_id,frame_index,label\nnotes.jpg,s1,0,animal\n")

    assert main(["eval-filter", str(manifest)]) == 1

    assert "notes.jpg: not a readable JPEG or PNG image" in one_error_line(capsys)


# --- Ctrl-C during offload ------------------------------------------------------------------


def states(storage: Path) -> list[str]:
    db = sqlite3.connect(storage / "queue.db")
    try:
        return [s for (s,) in db.execute("SELECT state FROM frames WHERE file IS NOT NULL")]
    finally:
        db.close()


def test_ctrl_c_during_offload_is_one_line_exit_130_and_a_rerun_finishes(
        sim_queue, tmp_path, capsys, monkeypatch):
    import trapd.offload as offload
    storage = copy_queue(sim_queue("default")["storage"], tmp_path / "card")
    dest = tmp_path / "drive"
    dest.mkdir()
    real_write, writes = offload._write_synced, []

    def ctrl_c_in_the_third_copy(path, data):
        writes.append(path)
        if len(writes) == 3:
            path.write_bytes(data[: len(data) // 2])            # half a .partial on the drive
            raise KeyboardInterrupt
        real_write(path, data)

    monkeypatch.setattr(offload, "_write_synced", ctrl_c_in_the_third_copy)
    assert main(["offload", str(dest), "--storage", str(storage)]) == 130

    line = one_error_line(capsys)
    assert "offload interrupted" in line and "run the same command again" in line
    assert not list(dest.rglob("*.partial"))                  # no temporary left on the drive
    assert states(storage).count("offloaded") == 2
    assert set(states(storage)) == {"offloaded", "pending"}

    monkeypatch.undo()
    assert main(["offload", str(dest), "--storage", str(storage)]) == 0
    assert set(states(storage)) == {"offloaded"}
    db = sqlite3.connect(storage / "queue.db")
    for sha256, offload_path in db.execute("SELECT sha256, offload_path FROM frames "
                                           "WHERE file IS NOT NULL"):
        assert hashlib.sha256((dest / offload_path).read_bytes()).hexdigest() == sha256
    db.close()


# --- signals during a simulator run -----------------------------------------------------------


def test_sigterm_ends_a_sim_run_after_the_event_in_flight_scored_up_to_there(tmp_path):
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)

    run = run_scenario(load_scenario("default"), make_config(tmp_path), handle_signals=True,
                       on_event=lambda event: os.kill(os.getpid(), signal.SIGTERM))

    assert run.stopped_by == "SIGTERM" and run.stopped_at_s < 40
    report = run.report()
    assert report["stopped_by"] == "SIGTERM" and len(report["events"]) == 1
    assert report["summary"]["animal_passes"] == 1             # the leopard at 6 s, not all 4
    assert report["summary"]["animal_passes_stored"] == 1
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_a_second_ctrl_c_aborts_the_sim_run(tmp_path):
    before = signal.getsignal(signal.SIGINT)

    def twice(event):
        os.kill(os.getpid(), signal.SIGINT)                     # stop after this event
        os.kill(os.getpid(), signal.SIGINT)                     # no: stop now

    with pytest.raises(KeyboardInterrupt):
        run_scenario(load_scenario("default"), make_config(tmp_path), handle_signals=True,
                     on_event=twice)
    assert signal.getsignal(signal.SIGINT) == before


def wait_for(predicate, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"no {what} within {timeout_s} s"
        time.sleep(0.05)


def test_realtime_sim_survives_sighup_and_ctrl_c_still_prints_the_summary_and_report(tmp_path):
    report, log = tmp_path / "report.json", tmp_path / "stderr.log"
    with open(log, "w") as stderr:
        sim = subprocess.Popen(
            [sys.executable, "-m", "trapd.cli", "sim", "default", "--realtime",
             "--storage", str(tmp_path / "storage"), "--report", str(report)],
            stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=REPO)
    try:
        wait_for(lambda: "trapd running" in log.read_text(), "start")
        sim.send_signal(signal.SIGHUP)
        wait_for(lambda: "SIGHUP ignored" in log.read_text(), "SIGHUP log line")
        assert sim.poll() is None                               # SIGHUP did not kill it
        sim.send_signal(signal.SIGINT)
        out, _ = sim.communicate(timeout=120)
    finally:
        if sim.poll() is None:
            sim.kill()
            sim.wait()
    errors = log.read_text()
    assert sim.returncode == 130, out + errors
    assert "Traceback" not in errors
    assert errors.count("SIGHUP ignored") == 1
    assert "stopped by SIGINT" in out and "summary:" in out and "report written" in out
    written = json.loads(report.read_text())
    assert written["stopped_by"] == "SIGINT" and written["stopped_at_s"] < 120
