"""Frame writer: JPEG encode, tag and durable save on worker threads.

The capture thread must never wait for an encoder: a PIR edge can come at
any moment, including while the previous burst is still being encoded. So
the capture thread hands each kept frame's image to an encoder thread, one
per core: simplejpeg (which drops the GIL while it encodes), then EXIF/XMP
spliced in. The image is either a copy of the frame's YUV planes (`YuvCopy`:
the camera buffer went back at once) or, while the camera can spare it, the
camera buffer itself (`camera.LentMain`, given back once encoded). One saver
thread writes the files durably (temporary name, fsync, rename, directory
fsync), so no encoder sits idle waiting for the card.

Index rows are written by the capture thread only (one SQLite writer), in
submission order, and only for jobs whose file is already on disk: the
storage contract "file fsync'd and renamed before its row is committed"
holds. Bytes in flight are bounded (`max_pending_bytes`, default three 12 MP
frames: one 4056x3040 YUV420 copy is 18.5 MB): a frame counts its YUV copy
(a lent camera buffer counts nothing: the camera bounds those) until it is
encoded, then its JPEG until the file is durable. So memory stays
bounded at 12 MP, an encoder never waits for an fsync, and small frames never
make the capture thread wait for a slow card.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Callable

import numpy as np
import simplejpeg

from trapd.camera import LentMain, yuv420_planes


# Three 12 MP YUV420 frames (4096 stride x 4560 rows).
DEFAULT_PENDING_BYTES = 3 * 4096 * 4560
M_ARENA_MAX = -8   # glibc's mallopt parameter


def use_one_malloc_arena() -> None:
    """Have every thread allocate from one glibc malloc arena. By default each
    encoder thread gets its own, frames and JPEGs freed in one are not reused
    by the others, and a 12 MP burst keeps about 20 MB more resident
    (bench/burst.py). The threads spend their time encoding, not in malloc.
    Does nothing where the C library is not glibc."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)   # the C library already loaded
    if mallopt is not None:
        mallopt(M_ARENA_MAX, 1)


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


def encode_yuv(y: np.ndarray, u: np.ndarray, v: np.ndarray, quality: int) -> bytes:
    """One JPEG from YUV420 planes (module-level so tests can slow it down)."""
    return simplejpeg.encode_jpeg_yuv_planes(y, u, v, quality=quality)


@dataclass
class YuvCopy:
    """The main stream of one frame, copied out of the camera buffer."""

    array: np.ndarray
    size: tuple[int, int]

    @classmethod
    def of(cls, frame) -> "YuvCopy":
        # picamera2's make_array returns a copy: the request can be released at once.
        return cls(frame.request.make_array("main"), tuple(frame.main_size))

    @property
    def nbytes(self) -> int:
        return self.array.nbytes

    def encode(self, encode, quality: int) -> bytes:
        jpeg = encode(*yuv420_planes(self.array, *self.size), quality)
        self.array = None   # freed now, not when the pool lets go of its arguments: the budget counts it free
        return jpeg


@dataclass
class Written:
    saved: str | None      # path relative to the storage root, None if not saved
    jpeg: bytes | None
    stored_ns: int | None  # clock time when the file was durable


class FrameWriter:
    """`submit` encodes on an encoder thread, then saves on the saver thread;
    `collect` hands finished jobs, in submission order, to their `on_written`
    callbacks on the calling thread."""

    def __init__(self, save_file: Callable[[str, bytes], str | None], now_ns: Callable[[], int],
                 workers: int | None = None,
                 max_pending_bytes: int = DEFAULT_PENDING_BYTES) -> None:
        self.workers = workers or default_workers()
        self._save_file = save_file
        self._now_ns = now_ns
        self._encoders = ThreadPoolExecutor(self.workers, thread_name_prefix="trapd-encoder")
        self._saver = ThreadPoolExecutor(1, thread_name_prefix="trapd-saver")
        self._max_bytes = max_pending_bytes
        self._pending_bytes = 0
        self._room = threading.Condition()
        self._jobs: deque[tuple[Future, Callable[[Written], None]]] = deque()
        use_one_malloc_arena()   # before the threads start
        self._warm_up()

    def _warm_up(self) -> None:
        """Start the threads and the encoder now, not at the first PIR edge."""
        tiny = np.full((24, 64), 128, np.uint8)
        y, u, v = yuv420_planes(tiny, 16, 16)
        for done in [self._encoders.submit(simplejpeg.encode_jpeg_yuv_planes, y, u, v, 90)
                     for _ in range(self.workers)]:
            done.result()

    @property
    def pending(self) -> int:
        return len(self._jobs)

    def submit(self, image: YuvCopy | LentMain | None, quality: int, tag: Callable[[bytes], bytes],
               file_name: str | None, on_written: Callable[[Written], None]) -> None:
        """Queue one frame; `image=None` (a dropped frame) only keeps its place in order."""
        if image is None:
            done: Future = Future()
            done.set_result(Written(None, None, None))
            self._jobs.append((done, on_written))
            return
        size = image.nbytes
        with self._room:   # one copy always fits, however large
            self._room.wait_for(lambda: self._pending_bytes == 0
                                or self._pending_bytes + size <= self._max_bytes)
            self._pending_bytes += size
        job: Future = Future()
        encoding = self._encoders.submit(self._encode, image, quality, tag)
        encoding.add_done_callback(partial(self._save_encoded, job, file_name, size))
        self._jobs.append((job, on_written))

    def _save_encoded(self, job: Future, file_name: str, size: int, encoding: Future) -> None:
        """On the encoder thread that finished: queue the JPEG for the saver.
        The YUV copy is freed now, so only the JPEG's bytes stay counted: the
        next copy can go to the idle encoder while this file is fsync'd."""
        if encoding.exception() is not None:
            self._release(size)
            job.set_exception(encoding.exception())
            return
        jpeg = encoding.result()
        self._release(size - len(jpeg))
        saving = self._saver.submit(self._save, jpeg, file_name)
        saving.add_done_callback(partial(self._finish, job, len(jpeg)))

    def _finish(self, job: Future, size: int, saving: Future) -> None:
        self._release(size)
        if saving.exception() is not None:
            job.set_exception(saving.exception())
        else:
            job.set_result(saving.result())

    def _release(self, size: int) -> None:
        with self._room:
            self._pending_bytes -= size
            self._room.notify_all()

    @staticmethod
    def _encode(image: YuvCopy | LentMain, quality: int, tag) -> bytes:
        return tag(image.encode(encode_yuv, quality))

    def _save(self, jpeg: bytes, file_name: str) -> Written:
        saved = self._save_file(file_name, jpeg)
        return Written(saved, jpeg, self._now_ns())

    def collect(self, wait: bool = False) -> int:
        """Deliver finished jobs in order (all of them with `wait`); returns how many."""
        delivered = 0
        while self._jobs and (wait or self._jobs[0][0].done()):
            future, on_written = self._jobs.popleft()
            on_written(future.result())
            delivered += 1
        return delivered

    def close(self) -> None:
        self.collect(wait=True)
        self._encoders.shutdown(wait=True)
        self._saver.shutdown(wait=True)
