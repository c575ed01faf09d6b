"""The real-camera lane (`make realcam`, ci/realcam/): tests on the REAL picamera2 0.3.38 and
the REAL libcamera, whose virtual pipeline handler (patched, ci/realcam/virtual-handler.patch)
gives the cameras listed in ci/realcam/virtual.yaml.in. Collected only when TRAPD_REALCAM is
set (tests/conftest.py); ci/realcam/run.sh sets it with the rest of the environment.

Cameras are found by Id or Model (`camera_num("target")`), never by number: picamera2 numbers
them by Id in reverse alphabetical order.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "realcam: runs on the real picamera2 + libcamera (make realcam, ci/realcam/)")
    # picamera2 0.3.38's NullPreview thread, once per camera start: not ours to fix.
    config.addinivalue_line("filterwarnings", "ignore:setDaemon:DeprecationWarning")


@pytest.hookimpl(tryfirst=True)  # before `-m realcam` selects
def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(item.fspath).resolve().parents:
            item.add_marker(pytest.mark.realcam)


def lane_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run the lane with `make realcam` (ci/realcam/run.sh)")
    return value


@pytest.fixture(scope="session")
def realcam_prefix() -> Path:
    """The libcamera install the lane built (ci/realcam/build.sh)."""
    return Path(lane_env("TRAPD_REALCAM_PREFIX"))


@pytest.fixture(scope="session")
def realcam_frames() -> Path:
    """The replay cameras' JPEG folders (ci/realcam/make_frames.py)."""
    return Path(lane_env("TRAPD_REALCAM_FRAMES"))


@pytest.fixture(scope="session")
def picamera2_class():
    """The real `picamera2.Picamera2`."""
    from picamera2 import Picamera2
    return Picamera2


@pytest.fixture(scope="session")
def camera_num(picamera2_class):
    """`camera_num(name)`: the number to open the camera whose Id or Model is `name` with."""
    def find(name: str) -> int:
        cameras = picamera2_class.global_camera_info()
        for num, info in enumerate(cameras):
            if name in (info.get("Id"), info.get("Model")):
                return num
        pytest.fail(f"no camera {name!r} among {cameras}")
    return find


@pytest.fixture
def open_camera(picamera2_class, camera_num):
    """`open_camera(name)`: a real Picamera2 on that camera, stopped and closed after the test."""
    opened = []

    def open_(name: str):
        opened.append(picamera2_class(camera_num(name)))
        return opened[-1]

    yield open_
    for picam2 in opened:
        picam2.close()
