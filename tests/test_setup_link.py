"""The daemon's side of setup (issue 18): setup mode, the per-trap secret and
the setup link, over a real Unix socket to a real daemon loop on the simulator
(virtual time, gpiozero's MockFactory)."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import simplejpeg
import yaml

from conftest import config_dict
from hw_sim.scenario import AnimalPass
from linked_trap import BUTTON_PIN, LED_PIN, linked, wait_until  # noqa: F401 (fixture)
from trapd.config import parse_config
from trapd.deployments import clock_steps
from trapd.errors import ConfigError
from trapd.setup.link import LinkClient, LinkError
from trapd.setup.secret import SecretError, create_secret, read_secret
from trapd.storage import Store

NS = 1_000_000_000


# -- the secret -------------------------------------------------------------------

def test_the_secret_is_made_once_private_and_refused_when_others_can_read_it(tmp_path):
    path = tmp_path / "setup-secret"
    secret, made = create_secret(path)
    assert made and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert create_secret(path) == (secret, False)           # printed again, not replaced
    assert read_secret(path) == secret.encode()
    path.chmod(0o644)
    with pytest.raises(SecretError, match="readable by others .*chmod 600"):
        read_secret(path)
    with pytest.raises(SecretError, match="trapd setup --secret"):
        read_secret(tmp_path / "none")


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file away")
def test_a_secret_made_by_root_belongs_to_the_owner_of_its_folder(tmp_path):
    folder = tmp_path / "lib-trapd"
    folder.mkdir()
    os.chown(folder, 65534, 65534)          # the service user's state directory
    create_secret(folder / "setup-secret")
    made = (folder / "setup-secret").stat()
    assert (made.st_uid, made.st_gid, stat.S_IMODE(made.st_mode)) == (65534, 65534, 0o600)


def test_a_bad_setup_value_is_reported_with_its_line(tmp_path):
    text = yaml.safe_dump(config_dict(tmp_path, {"setup": {"port": 70000}}), sort_keys=False)
    line = next(n for n, l in enumerate(text.splitlines(), 1) if "port: 70000" in l)
    with pytest.raises(ConfigError) as error:
        parse_config(text, source="config.yaml")
    assert f"config.yaml:{line}: setup.port = 70000: expected" in str(error.value)


def test_the_setup_button_may_not_share_a_pin(tmp_path):
    with pytest.raises(ConfigError, match="setup.button_pin = 17: expected a GPIO pin not "
                                          "already used by hardware.pir_pin"):
        parse_config(yaml.safe_dump(config_dict(tmp_path, {"setup": {"button_pin": 17}})))


# -- the link ---------------------------------------------------------------------

def test_a_wrong_secret_gets_nothing_and_a_missing_daemon_says_so(linked):
    trap = linked().start()
    with pytest.raises(LinkError, match="^setup link refused: wrong secret$"):
        trap.client(b"not-the-secret")
    assert trap.client().mode()["active"] is False
    trap.stop()
    with pytest.raises(LinkError, match="no daemon there"):
        trap.client()


def test_setup_mode_is_on_after_boot_then_off_when_its_time_is_up(linked):
    trap = linked(setup={"after_boot_s": 120}).start()
    client = trap.client()
    mode = client.mode()
    assert mode["active"] and mode["why"] == "boot"
    assert mode["until_wall_ns"] > trap.clock.wall_ns()
    booted_ns = trap.clock.monotonic_ns()
    wait_until(lambda: not client.mode()["active"], "end of the boot session")
    assert trap.clock.monotonic_ns() - booted_ns <= 120 * NS + NS   # ended by virtual time
    assert client.mode() == {"active": False, "until_wall_ns": None, "why": None}


def test_the_button_and_trapd_setup_open_setup_mode(linked):
    trap = linked(setup={"button_pin": BUTTON_PIN, "session_s": 600}).start()
    client = trap.client()
    assert not client.mode()["active"]
    button = trap.bench.factory.pin(BUTTON_PIN)
    button.drive_low()                      # pressed (to ground)
    button.drive_high()
    assert client.mode()["why"] == "button"
    assert trap.daemon.trap.status_led.status == "healthy"      # the LED showed the status code
    assert client.open_setup(900)["why"] == "command"


def test_a_pir_edge_arrives_by_long_poll_blinks_the_led_and_names_its_event(linked):
    trap = linked(setup={"after_boot_s": 3600}).start()
    client = trap.client()
    led = trap.bench.factory.pin(LED_PIN)
    assert client.edges(0, 0) == {"seq": 0, "edges": []}
    lit_before = sum(s.state for s in led.states)
    trap.pir_pulse_in(2.0)
    answer = client.edges(0, 30)            # waits for the edge
    assert answer["seq"] == 1 and answer["edges"][0]["seq"] == 1
    assert answer["edges"][0]["wall_ns"] > 0
    event_id = wait_until(lambda: client.edges(0, 0)["edges"][0]["event_id"], "event id of the edge")
    finished = client.events(0, 30)["events"]
    assert finished[0]["event_id"] == event_id and finished[0]["frames"] >= 5
    assert finished[0]["kept"] == len(finished[0]["files"])     # an empty scene: the filter drops
    wait_until(lambda: sum(s.state for s in led.states) > lit_before, "LED flash for the edge")


def decoded(preview: dict) -> np.ndarray:
    return simplejpeg.decode_jpeg(preview["jpeg"], colorspace="GRAY")[:, :, 0]


def test_the_live_view_changes_as_an_animal_crosses(linked):
    hare = AnimalPass(species="hare", enter_s=0, cross_s=120, height=0.4)
    trap = linked(animals=(hare,)).start()
    client = trap.client()
    first = client.preview(max_width=320)
    assert first["jpeg"].startswith(b"\xff\xd8")
    assert decoded(first).shape == (240, 320) and first["night"] is False
    a_minute_later = trap.clock.monotonic_ns() + 60 * NS
    wait_until(lambda: trap.clock.monotonic_ns() > a_minute_later, "a minute of the scene")
    second = client.preview(max_width=320)
    assert second["seq"] > first["seq"] and second["wall_ns"] > first["wall_ns"]
    difference = np.abs(decoded(second).astype(int) - decoded(first).astype(int))
    assert difference.mean() > 1.0           # the hare moved: a different picture
    overlay = first["overlay"]
    x0, y0, x1, y1 = overlay["smallest_animal"]
    assert 0 < x0 < x1 < 1 and 0 < y0 < y1 < 1 and abs((x0 + x1) / 2 - 0.5) < 1e-3


def test_the_overlay_shows_the_filter_masks(linked):
    trap = linked(overrides={"filter": {"masks": [[0.0, 0.0, 0.25, 0.5],
                                                  [[0.5, 0.5], [1.0, 0.5], [0.75, 1.0]]]}}).start()
    overlay = trap.client().preview()["overlay"]
    assert overlay["masks"] == [[0.0, 0.0, 0.25, 0.5], [0.5, 0.5, 1.0, 1.0]]
    assert overlay["mask_polygons"][1] == [[0.5, 0.5], [1.0, 0.5], [0.75, 1.0]]


def test_a_pir_event_during_a_live_view_keeps_its_pre_trigger_frames(linked):
    """The page never starves the trap: previews pulled in a loop the whole time."""
    trap = linked(setup={"after_boot_s": 3600}, overrides={"filter": {"enabled": False}}).start()
    client = trap.client()
    pulling = threading.Event()
    previews = []

    def watch() -> None:
        viewer = trap.client()
        while not pulling.is_set():
            shown = viewer.preview()
            previews.append((shown["seq"], shown["wall_ns"]))
        viewer.close()

    viewer = threading.Thread(target=watch, daemon=True)
    viewer.start()
    wait_until(lambda: len(previews) >= 3, "previews")
    trap.pir_pulse_in(3.0)
    event = client.events(0, 60)["events"][0]
    pulling.set()
    viewer.join(30)
    report = wait_until(lambda: trap.bench.events and trap.bench.events[0], "the event's report")
    pre = [f for f in report.frames if f.pre_trigger]
    assert pre and all(f.file for f in pre if f.kept)
    assert len(pre) == trap.bench.config.burst.pre_trigger_frames
    assert event["files"] and previews == sorted(previews)
    # The live view was being copied while the event recorded (the clock never stepped here).
    wall_minus_monotonic = trap.clock.wall_ns() - trap.clock.monotonic_ns()
    first, last = report.frames[0].sensor_timestamp_ns, report.frames[-1].sensor_timestamp_ns
    assert any(first <= wall - wall_minus_monotonic <= last for _, wall in previews)


def test_a_live_view_that_fails_on_the_trap_thread_costs_the_view_not_the_capture(
        linked, monkeypatch, caplog):
    trap = linked(setup={"after_boot_s": 3600}, overrides={"filter": {"enabled": False}}).start()
    client = trap.client()
    assert client.preview()["jpeg"]

    def broken_copy(frame, step):
        raise MemoryError("no room for the copy")

    monkeypatch.setattr(trap.bench.trap.camera, "main_subsampled", broken_copy)
    try:
        client.preview()          # the copy fails on the trap's thread
    except LinkError:
        pass
    wait_until(lambda: trap.bench.trap.frame_tap is None, "the live view turned off")
    trap.pir_pulse_in(3.0)
    report = wait_until(lambda: trap.bench.events and trap.bench.events[0], "the event's report")
    assert any(f.pre_trigger for f in report.frames) and any(f.file for f in report.frames)
    assert trap._thread.is_alive()
    assert "the live view failed on a camera frame" in caplog.text


def test_a_standby_trap_streams_while_the_view_is_watched(linked):
    trap = linked(overrides={"power": {"mode": "standby"}}).start()
    camera = trap.daemon.trap.camera
    wait_until(lambda: not camera.running, "standby (camera stopped)")
    assert trap.client().preview()["jpeg"]
    assert camera.running or trap.daemon.trap.operating.camera_kept_on()


def test_set_clock_shifts_the_trap_clock_and_records_a_step(linked):
    trap = linked(setup={"after_boot_s": 3600}).start()
    client = trap.client()
    wanted = trap.clock.wall_ns() + 3600 * NS
    step = client.set_clock(wanted, "technician A. Ranger")["step_ns"]
    assert 3500 * NS < step <= 3600 * NS         # an hour, less the virtual time in between
    assert trap.clock.wall_ns() >= wanted
    trap.stop()
    store = Store(trap.bench.config.storage.root, 0, recover=False)
    try:
        steps = clock_steps(store)
    finally:
        store.close()
    assert [(s["step_ns"], s["source"], s["confirmed_by"]) for s in steps] == [
        (step, "setup page", "technician A. Ranger")]
    from trapd.cli import main
    package = trap.config_path.parent / "package"
    assert main(["export", "--camtrap-dp", str(package), "--config", str(trap.config_path)]) == 0
    import csv
    with open(package / "deployments.csv", newline="") as f:
        comments = next(csv.DictReader(f))["deploymentComments"]
    # The step as set: an hour less the virtual time that passed before it (+00:59:59 at times).
    from trapd.timekeeping import format_shift
    assert f"trap clock set {format_shift(step)} at " in comments
    assert "from the setup page, confirmed by technician A. Ranger" in comments


def test_reload_refuses_a_bad_config_with_check_configs_message_and_applies_a_good_one(linked):
    trap = linked().start()
    client = trap.client()
    good = trap.config_path.read_text()
    trap.config_path.write_text(good.replace("frames: 5", "frames: many", 1))
    line = next(n for n, l in enumerate(trap.config_path.read_text().splitlines(), 1)
                if "frames: many" in l)
    answer = client.reload()
    assert not answer["ok"]
    assert f"{trap.config_path}:{line}: burst.frames = 'many': expected" in answer["message"]
    assert trap.daemon.trap.config.burst.frames == 5
    trap.config_path.write_text(good.replace("frames: 5", "frames: 7", 1))
    assert client.reload() == {"ok": True, "message": f"config reloaded from {trap.config_path}"}
    assert trap.daemon.trap.config.burst.frames == 7


def test_health_gives_the_page_and_status_the_same_block(linked):
    trap = linked(overrides={"filter": {"enabled": False}}).start()     # every frame kept
    trap.pir_pulse_in(1.0)
    client = trap.client()
    client.events(0, 60)
    health = client.health()
    assert health["station_id"] == trap.bench.config.station.station_id
    assert health["deployment_start"] and health["clock_synced"] is True
    assert health["images_not_offloaded"] >= 1 and health["days_left"] is not None
    assert health["images_not_synced"] is None and health["fleet_link"] == "off"
    assert health["battery_trend_v_per_day"] is None        # no battery history without telemetry
    assert health["last_events"][0]["files"] and health["led_status"] == "healthy"
    assert health["day_night"] == "day" and health["power_mode"] == "streaming"


def test_setup_photo_is_stored_as_a_setup_event_from_the_running_camera(linked):
    from conftest import exiftool_tags
    trap = linked(setup={"after_boot_s": 3600}).start()
    client = trap.client()
    photo = client.setup_photo("setup", "technician A. Ranger")
    root = Path(trap.bench.config.storage.root)
    assert photo["kind"] == "setup" and photo["file"].endswith("_01.jpg")
    image = simplejpeg.decode_jpeg((root / photo["file"]).read_bytes())
    assert image.shape[:2][::-1] == trap.bench.config.hardware.camera.main_size   # the full image
    with pytest.raises(LinkError, match="not a setup photo kind"):
        client.setup_photo("selfie", "someone")
    trap.stop()
    store = Store(root, 0, recover=False)
    try:
        (frame,) = [f for f in store.saved_frames(("pending",)) if f["trigger"] == "setup"]
        note = store.index.execute("SELECT note FROM events WHERE event_id = ?",
                                   (photo["event_id"],)).fetchone()[0]
    finally:
        store.close()
    assert frame["event_id"] == photo["event_id"] and frame["file"] == photo["file"]
    assert frame["event_images"] == 1 and frame["sha256"]
    assert note == "taken from the setup page by technician A. Ranger"
    tags = exiftool_tags(root / photo["file"])
    assert tags["XMP-trap:TriggerSource"] == "setup"
    assert tags["XMP-trap:EventID"] == photo["event_id"]


def test_a_setup_photo_from_a_standby_trap_wakes_its_camera(linked):
    trap = linked(overrides={"power": {"mode": "standby"}}).start()
    wait_until(lambda: not trap.daemon.trap.camera.running, "standby (camera stopped)")
    photo = trap.client().setup_photo("pickup", "someone")
    assert photo["kind"] == "pickup"
    assert (Path(trap.bench.config.storage.root) / photo["file"]).stat().st_size > 1000


def test_a_pir_event_while_setup_photos_are_taken_keeps_its_pre_trigger_frames(linked):
    trap = linked(overrides={"filter": {"enabled": False}}).start()
    client = trap.client()
    trap.pir_pulse_in(1.0)
    photos = [client.setup_photo("setup", "someone") for _ in range(3)]
    report = wait_until(lambda: trap.bench.events and trap.bench.events[0], "the PIR event")
    pre = [f for f in report.frames if f.pre_trigger]
    assert len(pre) == trap.bench.config.burst.pre_trigger_frames and all(f.file for f in pre)
    assert len({p["event_id"] for p in photos} | {report.event_id}) == 4     # numbers not shared


def test_ending_then_starting_a_deployment_through_the_link(linked):
    """End (`trapd deployment end`'s function and message), then the new id checked against
    the card (`trapd deployment start`'s), written as the page writes it, and reloaded."""
    from trapd.cli_deployment import write_new_deployment
    trap = linked().start()
    client = trap.client()
    old = client.health()["deployment_id"]
    ended = client.end_deployment()
    assert ended == {"ok": True, "deployment_id": old,
                     "message": f"deployment {old} ended now; exports give this as its end"}
    assert client.health()["deployment_end_kind"] == "pickup"
    offered = client.deployments()
    assert offered["current"] == old and offered["recorded"] == [old]
    new = offered["next_id"]
    assert new != old
    refused = client.check_deployment_id(old)
    assert refused == {"ok": False, "current": old, "message": f"deployment {old} already ran "
                       "on this card: a new deployment needs a new id"}
    assert client.check_deployment_id(new)["ok"]
    write_new_deployment(trap.config_path, new)
    assert client.reload()["ok"]
    health = client.health()
    assert health["deployment_id"] == new and health["deployment_start"]
    assert health["deployment_end_kind"] is None
    assert client.deployments()["recorded"] == [old, new]
    assert client.check_deployment_id(old)["message"] == refused["message"]    # ran before


# -- the commands -------------------------------------------------------------------

def test_trapd_setup_secret_prints_the_secret_and_trapd_setup_opens_setup_mode(linked, capsys):
    from trapd.cli import main
    trap = linked()
    trap.start()
    assert main(["setup", "--config", str(trap.config_path), "--secret"]) == 0
    assert capsys.readouterr().out.strip() == trap.secret.decode()
    assert main(["setup", "--config", str(trap.config_path), "--minutes", "5"]) == 0
    assert "setup mode on until" in capsys.readouterr().out
    mode = trap.client().mode()
    assert mode["active"] and mode["why"] == "command"
    assert mode["until_wall_ns"] - trap.clock.wall_ns() <= 300 * NS


def test_trapd_setup_says_when_setup_is_off_or_the_daemon_is_not_there(tmp_path, capsys):
    from trapd.cli import main
    from conftest import write_config
    off = write_config(tmp_path / "off.yaml", tmp_path)
    assert main(["setup", "--config", str(off)]) == 1
    assert "setup.enabled: false" in capsys.readouterr().err
    folder = Path(tempfile.mkdtemp(prefix="trapd-link-"))
    create_secret(folder / "secret")
    on = write_config(tmp_path / "on.yaml", tmp_path, {"setup": {
        "enabled": True, "secret_file": str(folder / "secret"), "link_socket": str(folder / "s")}})
    assert main(["setup", "--config", str(on)]) == 1
    assert "no daemon there" in capsys.readouterr().err
    shutil.rmtree(folder)


def test_trapd_status_prints_the_health_block(linked, capsys):
    from trapd.cli import main
    trap = linked(overrides={"filter": {"enabled": False}}).start()
    trap.pir_pulse_in(1.0)
    trap.client().events(0, 60)
    assert main(["status", "--config", str(trap.config_path)]) == 0
    out = capsys.readouterr().out
    assert "health: " in out and "days left" in out and "fleet link: off" in out
    assert "E000001" in out
    assert main(["status", "--config", str(trap.config_path), "--json"]) == 0
    import json
    health = json.loads(capsys.readouterr().out)["health"]
    assert health["deployment_id"] == trap.bench.config.station.deployment_id
    assert health["last_events"][0]["files"]


def test_the_system_clock_says_why_it_cannot_be_set(monkeypatch):
    from trapd.clock import ClockError, SystemClock

    def refused(clock_id, ns):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(time, "clock_settime_ns", refused)
    with pytest.raises(ClockError, match="cannot set the clock: .*CAP_SYS_TIME"):
        SystemClock().set_wall_ns(time.time_ns())


def test_set_clock_refused_by_the_system_leaves_no_step(linked, monkeypatch):
    from trapd.clock import ClockError
    trap = linked().start()

    def refused(wall_ns):
        raise ClockError("cannot set the clock: trapd may not")

    monkeypatch.setattr(trap.clock, "set_wall_ns", refused)
    with pytest.raises(LinkError, match="^cannot set the clock: trapd may not$"):
        trap.client().set_clock(trap.clock.wall_ns(), "someone")


def test_a_trap_without_its_secret_captures_on_without_the_link(tmp_path, caplog):
    """`trapd sim` with setup.enabled and no secret file: one line, the scenario still runs."""
    from hw_sim.run import run_scenario
    from hw_sim.scenario import load_scenario
    from conftest import make_config
    folder = Path(tempfile.mkdtemp(prefix="trapd-link-"))
    config = make_config(tmp_path, {"setup": {"enabled": True, "secret_file": str(folder / "none"),
                                              "link_socket": str(folder / "s")}})
    run = run_scenario(load_scenario("default"), config, str(tmp_path / "storage"))
    assert run.events and "setup link not started (the trap runs on without it): no setup " \
                          "secret at" in caplog.text
    assert not (folder / "s").exists()
    shutil.rmtree(folder)


def test_trapd_sim_with_setup_enabled_serves_the_link(tmp_path):
    """The command a developer runs with the setup page: `trapd sim --realtime --config`."""
    import signal
    import subprocess
    import sys
    from conftest import REPO, write_config
    folder = Path(tempfile.mkdtemp(prefix="trapd-link-"))
    secret = create_secret(folder / "secret")[0].encode()
    config = write_config(tmp_path / "config.yaml", tmp_path, {"setup": {
        "enabled": True, "secret_file": str(folder / "secret"),
        "link_socket": str(folder / "setup.sock"), "after_boot_s": 600}})
    sim = subprocess.Popen([sys.executable, "-m", "trapd.cli", "sim", "default", "--realtime",
                            "--config", str(config), "--storage", str(tmp_path / "storage")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        wait_until(lambda: (folder / "setup.sock").exists() or sim.poll() is not None, "link socket")
        client = LinkClient(folder / "setup.sock", secret)
        assert client.mode()["why"] == "boot"
        assert client.preview(320)["jpeg"].startswith(b"\xff\xd8")
        assert client.health()["station_id"]
        client.close()
        sim.send_signal(signal.SIGINT)
        sim.communicate(timeout=120)
        assert not (folder / "setup.sock").exists()        # removed when the run ends
    finally:
        if sim.poll() is None:
            sim.kill()
            sim.wait()
        shutil.rmtree(folder)


def test_check_config_warns_of_a_missing_or_unsafe_secret(tmp_path, capsys):
    from conftest import write_config
    from trapd.check_config import check_config_main
    secret = tmp_path / "secret"
    path = write_config(tmp_path / "config.yaml", tmp_path, {"setup": {
        "enabled": True, "secret_file": str(secret)}})
    assert check_config_main(str(path)) == 0
    assert "setup.secret_file: no setup secret at" in capsys.readouterr().out
    create_secret(secret)
    assert check_config_main(str(path)) == 0
    assert "setup.secret_file" not in capsys.readouterr().out
    secret.chmod(0o640)
    assert check_config_main(str(path)) == 0
    assert "is readable by others (mode 0640)" in capsys.readouterr().out


def test_a_second_daemon_does_not_steal_the_link_and_a_stale_socket_is_replaced(tmp_path):
    from trapd.setup.link import LinkServer
    folder = Path(tempfile.mkdtemp(prefix="trapd-link-"))
    path = folder / "setup.sock"
    first = LinkServer(path, b"s", lambda name, kwargs: "first").start()
    with pytest.raises(LinkError, match="another process serves it"):
        LinkServer(path, b"s", lambda name, kwargs: "second")
    assert LinkClient(path, b"s").mode() == "first"
    first.close()
    import socket
    stale = socket.socket(socket.AF_UNIX)     # bound, never listening: a crashed daemon's file
    stale.bind(str(path))
    stale.close()
    again = LinkServer(path, b"s", lambda name, kwargs: "again").start()
    assert LinkClient(path, b"s").mode() == "again"
    again.close()
    shutil.rmtree(folder)


def test_no_live_view_from_a_camera_that_delivers_nothing(linked):
    trap = linked(overrides={"power": {"mode": "standby"}})
    trap.bench.rig.present = False                   # unplugged before the daemon starts
    trap.daemon.trap.camera.close()
    trap.start()
    with pytest.raises(LinkError, match="^no camera view: the camera is not delivering frames$"):
        trap.client().preview()


def test_the_battery_trend_comes_from_the_heartbeats_the_trap_keeps(tmp_path):
    from conftest import make_config
    from trapd.fleet.outbox import FleetDb
    from trapd.fleet.telemetry import topic
    from trapd.health_summary import Now, health_summary
    from trapd.sensors import SensorReadings
    config = make_config(tmp_path, {"fleet": {"enabled": True}})
    root = config.storage.root
    Store(root, 0).close()
    fleet = FleetDb(root)
    now = 1_800_000_000 * NS
    for day in range(6, -1, -1):                      # 12.6 V a week ago, 0.1 V less each day
        fleet.enqueue("S", topic("S", "heartbeat"), {"battery_v": round(12.0 + 0.1 * day, 2)},
                      now - day * 86400 * NS)
    fleet.close()
    readings = SensorReadings(battery_voltage_v=12.0)
    health = health_summary(config, root, Now(now, True, readings, {}, False, "streaming"))
    assert health["battery_trend_v_per_day"] == -0.1
    assert health["fleet_link"] == "down: nothing delivered yet"
    assert health["images_not_synced"] is None                # fleet on, sync off
