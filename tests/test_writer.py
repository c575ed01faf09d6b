"""The frame writer and the frame ring, on their own: order, failures, the frame before,
frames encoded in their camera buffer."""

from __future__ import annotations

import ctypes
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import trapd.writer
from conftest import NS
from trapd.camera import Frame, FrameRing, yuv420_planes
from trapd.storage import Store
from trapd.writer import FrameWriter, YuvCopy

W, H = 64, 48


def yuv_copy(level: int) -> YuvCopy:
    return YuvCopy(np.full((H * 3 // 2, W), level, np.uint8), (W, H))


def test_frames_are_saved_by_the_saver_and_delivered_in_order(tmp_path, monkeypatch):
    first_may_finish = threading.Event()
    real_encode = trapd.writer.encode_yuv

    def encode(y, u, v, quality):
        if y[0, 0] == 10:            # the first frame's encode is the slow one
            first_may_finish.wait(timeout=30)
        return real_encode(y, u, v, quality)

    monkeypatch.setattr(trapd.writer, "encode_yuv", encode)
    store = Store(tmp_path, 0)
    writer = FrameWriter(store.save_file, time.monotonic_ns, workers=2)
    delivered = []
    for i, level in enumerate((10, 20, 30)):
        writer.submit(yuv_copy(level), 90, lambda jpeg: jpeg, f"e/{i}.jpg",
                      lambda written, i=i: delivered.append((i, written.saved)))
    time.sleep(0.3)
    assert writer.collect() == 0          # frames 1 and 2 may be done, but not before frame 0
    first_may_finish.set()
    writer.close()
    store.close()
    assert [i for i, _ in delivered] == [0, 1, 2]
    assert all((tmp_path / saved).stat().st_size > 0 for _, saved in delivered)


def test_an_encoder_failure_reaches_the_caller_instead_of_hanging(tmp_path, monkeypatch):
    def broken_encode(*args):
        raise MemoryError("no room for the JPEG")

    monkeypatch.setattr(trapd.writer, "encode_yuv", broken_encode)
    store = Store(tmp_path, 0)
    writer = FrameWriter(store.save_file, time.monotonic_ns, workers=1)
    writer.submit(yuv_copy(10), 90, lambda jpeg: jpeg, "e/0.jpg", lambda written: None)
    with pytest.raises(MemoryError):
        writer.collect(wait=True)
    writer.close()
    store.close()


def test_a_card_stuck_in_fsync_does_not_hold_back_the_encoders(tmp_path):
    """Room for two frames' copies: once they are encoded, their copies are
    freed, so a third frame goes to an encoder while the card still hangs."""
    card_free = threading.Event()
    store = Store(tmp_path, 0)

    def stuck_save(name, jpeg):
        card_free.wait(timeout=30)
        return store.save_file(name, jpeg)

    size = yuv_copy(0).array.nbytes
    writer = FrameWriter(stuck_save, time.monotonic_ns, workers=2, max_pending_bytes=2 * size)
    third_submitted = threading.Event()
    saved = []

    def capture():
        for i in range(3):
            writer.submit(yuv_copy(10 * i), 90, lambda jpeg: jpeg, f"e/{i}.jpg",
                          lambda written: saved.append(written.saved))
        third_submitted.set()

    threading.Thread(target=capture, daemon=True).start()
    submitted_while_stuck = third_submitted.wait(timeout=20)
    card_free.set()
    writer.close()
    store.close()
    assert submitted_while_stuck
    assert len(saved) == 3 and all((tmp_path / name).stat().st_size > 0 for name in saved)


def _frame(t_ns: int, level: int) -> Frame:
    return Frame(t_ns, t_ns, {}, np.full((24, 32), level, np.uint8), (W, H))


def test_the_ring_gives_the_frame_just_before_and_none_after_a_gap():
    ring = FrameRing(hold=0, keep_lores=4, lores_size=(32, 24))
    for i in range(3):
        frame = _frame(100 * i, level=i)
        ring.see(frame)
        ring.push(frame)
    assert ring.lores_just_before(250, max_gap_ns=150)[0, 0] == 2
    assert ring.lores_just_before(150, max_gap_ns=150)[0, 0] == 1
    assert ring.lores_just_before(500, max_gap_ns=150) is None      # frames were lost
    ring.forget_lores()                                               # light switched
    assert ring.lores_just_before(250, max_gap_ns=150) is None


# -- frames encoded in their camera buffer (no copy) -----------------------------------------

def _expected_jpeg(frame: Frame) -> bytes:
    w, h = frame.main_size
    return trapd.writer.encode_yuv(*yuv420_planes(frame.request.make_array("main"), w, h), 90)


def _save(writer: FrameWriter, image, name: str, saved: list) -> None:
    writer.submit(image, 90, lambda jpeg: jpeg, name, lambda written: saved.append(written.saved))


def test_a_frame_encoded_in_its_camera_buffer_is_saved_as_if_copied_and_the_buffer_goes_back(bench):
    b = bench()
    camera, writer, root = b.trap.camera, b.trap.writer, b.trap.store.root
    first, second = camera.next_frame(), camera.next_frame()
    expected = _expected_jpeg(first)
    lent = camera.lend_main(first, most=1)
    assert lent is not None and first.request is None          # the frame let go of its request
    assert camera.lend_main(second, most=1) is None             # one buffer lent already: copy
    saved = []
    _save(writer, lent, "e/lent.jpg", saved)
    _save(writer, YuvCopy.of(second), "e/copied.jpg", saved)
    second.release()
    writer.collect(wait=True)
    assert (root / saved[0]).read_bytes() == expected
    assert (root / saved[1]).stat().st_size > 0
    third = camera.next_frame()
    lent_again = camera.lend_main(third, most=1)
    assert lent_again is not None                               # the buffer came back
    _save(writer, lent_again, "e/third.jpg", saved)
    writer.collect(wait=True)


def test_stopping_the_camera_waits_for_an_encoder_still_reading_its_buffer(bench, monkeypatch):
    b = bench()
    camera, writer, root = b.trap.camera, b.trap.writer, b.trap.store.root
    encoder_may_finish = threading.Event()
    real_encode = trapd.writer.encode_yuv

    def slow_encode(y, u, v, quality):
        encoder_may_finish.wait(timeout=30)
        return real_encode(y, u, v, quality)

    frame = camera.next_frame()
    expected = _expected_jpeg(frame)
    monkeypatch.setattr(trapd.writer, "encode_yuv", slow_encode)
    saved = []
    _save(writer, camera.lend_main(frame, most=2), "e/0.jpg", saved)
    stopper = threading.Thread(target=camera.stop)
    stopper.start()
    stopper.join(timeout=0.5)
    waited_for_encoder = stopper.is_alive()
    encoder_may_finish.set()
    stopper.join(timeout=30)
    writer.collect(wait=True)
    assert waited_for_encoder and not camera.running
    assert (root / saved[0]).read_bytes() == expected


def test_encoders_slower_than_the_camera_never_leave_it_without_buffers(bench, monkeypatch):
    """Every frame of a burst is kept while each encode takes two frame periods
    of real time: buffers are lent only while the camera can spare them."""
    b = bench({"burst": {"frames": 20, "interval_s": 0, "pre_trigger_frames": 2},
               "filter": {"enabled": False}})
    real_encode = trapd.writer.encode_yuv

    def slow_encode(y, u, v, quality):
        time.sleep(0.02)
        return real_encode(y, u, v, quality)

    lent = []
    real_lend = b.trap.camera.lend_main
    monkeypatch.setattr(trapd.writer, "encode_yuv", slow_encode)
    monkeypatch.setattr(b.trap.camera, "lend_main",
                        lambda frame, most: lent.append(real_lend(frame, most)) or lent[-1])
    b.run_for(1)
    b.pir_pulse_at(0.2, length_s=0.1)
    b.run_for(5)
    [event] = b.events
    period_ns = NS // b.config.hardware.camera.frame_rate
    stamps = [f.sensor_timestamp_ns for f in event.frames]
    assert event.note is None and len(stamps) == 22
    assert all(later - earlier == period_ns for earlier, later in zip(stamps, stamps[1:]))
    assert all((b.trap.store.root / f.file).stat().st_size > 0 for f in event.frames)
    assert any(lent) and not all(lent)           # some frames read in place, some copied


ARENAS_AFTER_ENCODING = """
import ctypes, sys, time
import numpy as np
from concurrent.futures import ThreadPoolExecutor
from trapd.writer import FrameWriter, YuvCopy
frame = np.full((48 * 3 // 2, 64), 100, np.uint8)
if sys.argv[1] == "writer":
    writer = FrameWriter(lambda name, jpeg: name, time.monotonic_ns, workers=2)
    for i in range(8):
        writer.submit(YuvCopy(frame.copy(), (64, 48)), 90, bytes, f"{i}.jpg", lambda written: None)
    writer.close()
else:   # encoder threads of its own
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda i: YuvCopy(frame.copy(), (64, 48)).encode(
            lambda *planes: bytes(2_000_000), 90), range(8)))
ctypes.CDLL(None).malloc_stats()
"""


def _malloc_arenas(mode: str) -> int:
    result = subprocess.run([sys.executable, "-c", ARENAS_AFTER_ENCODING, mode],
                            capture_output=True, text=True, timeout=60, check=True)
    return result.stderr.count("Arena ")


def test_the_encoder_threads_share_one_malloc_arena():
    """glibc's malloc_stats lists one arena per allocating thread by default;
    the writer's threads use one, which keeps a 12 MP burst's memory down."""
    if not hasattr(ctypes.CDLL(None), "malloc_stats"):
        pytest.skip("malloc arenas are glibc's")
    assert _malloc_arenas("own threads") > 1
    assert _malloc_arenas("writer") == 1
