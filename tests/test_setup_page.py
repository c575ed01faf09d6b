"""The setup page in a real headless Chromium (Debian's chromium and chromedriver,
through selenium): refused without the secret; live view, walk test, config
edit, clock, position and deployment with it; closed when setup mode is off. A
screenshot of each state goes to build/screenshots/setup-page/. The harness
(browser, trap and page processes, helpers): tests/setup_page_harness.py."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
from pathlib import Path

import pytest

from conftest import REPO
from setup_page_harness import (  # noqa: F401 (fixtures)
    EDGE_LATENCY_LIMIT_MS, _require_browser, accept_dialog, browser, closed_page, element,
    https_page, log_in, page, port_open, screenshot, status_of, text_of, wait_until)


# --------------------------------------------------------------------------


PROTECTED = [("GET", "/"), ("GET", "/api/health"), ("GET", "/api/preview.jpg"),
             ("GET", "/api/stream"), ("GET", "/api/config"), ("GET", "/static/app.js"),
             ("GET", "/api/image?path=x.jpg"), ("POST", "/api/clock"), ("POST", "/api/config"),
             ("POST", "/api/config/check"), ("POST", "/api/location"),
             ("POST", "/api/deployment/start"), ("GET", "/api/deployment"),
             ("POST", "/api/deployment/photo"), ("POST", "/api/deployment/end")]


def test_without_the_secret_the_page_gives_nothing_but_the_login_form(page, browser):
    for method, path in PROTECTED:
        json_body = b'{"wall_ns": 1, "text": ""}' if method == "POST" else None
        status, body = status_of(page.url + path, method, json_body,
                                 {"Content-Type": "application/json"})
        assert status == 401, (method, path, status)
        assert b"LOL-A017" not in body and b"station" not in body.lower()
    assert page.clock_steps() == [] and page.config_path.read_text() == page.original
    browser.delete_all_cookies()
    browser.get(page.url + "/")
    element(browser, "#secret")
    assert "LOL-A017" not in browser.page_source
    log_in(browser, page, secret="wrong-secret")
    assert wait_until(lambda: "not this trap's secret" in browser.page_source)
    screenshot(browser, "01-refused-without-secret")
    statuses = browser.execute_async_script(
        "const done = arguments[0];"
        "Promise.all(['/api/health', '/api/preview.jpg', '/api/config'].map("
        "  (p) => fetch(p).then((r) => r.status))).then(done);")
    assert statuses == [401, 401, 401]


def test_an_oversized_body_is_cut_off_unread_with_or_without_the_secret(page, browser):
    """A client on the hotspot cannot make the page hold a body of any size."""
    secret_prefix = b"secret=" + page.secret.encode() + b"&pad="
    try:
        status, body = status_of(page.url + "/login", "POST", secret_prefix + b"x" * 5_000_000,
                                 {"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 200 and b"not this trap's secret" in body      # not logged in
    except urllib.error.URLError as cut_off:     # answered and closed before it was all sent
        assert isinstance(cut_off.reason, (ConnectionResetError, BrokenPipeError))
    assert status_of(page.url + "/login")[0] == 200                     # and it serves on
    log_in(browser, page)
    element(browser, "#view")
    statuses = browser.execute_async_script(
        "const done = arguments[0];"
        "const big = JSON.stringify({text: 'x'.repeat(2000000)});"
        "Promise.all(['/api/config/check', '/api/clock'].map((p) => fetch(p, {method: 'POST',"
        "  headers: {'Content-Type': 'application/json'}, body: big}).then((r) => r.status)))"
        ".then(done);")
    assert statuses == [413, 413]
    assert page.config_path.read_text() == page.original and page.clock_steps() == []


def canvas_seq(browser) -> int:
    return int(browser.find_element("id", "view").get_attribute("data-seq") or 0)


def test_with_the_secret_the_live_view_changes_as_the_scene_changes(page, browser):
    log_in(browser, page)
    element(browser, "canvas#view[data-seq]")
    first = browser.execute_script("return document.getElementById('view').toDataURL()")
    seq = canvas_seq(browser)
    assert wait_until(lambda: canvas_seq(browser) >= seq + 2)
    second = browser.execute_script("return document.getElementById('view').toDataURL()")
    assert first != second
    cookie = browser.get_cookie("trapd_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert wait_until(lambda: "LOL-A017" in text_of(browser, "title"))
    browser.execute_script("document.getElementById('live').scrollIntoView()")
    screenshot(browser, "02-live-view")


def test_a_pir_edge_shows_on_the_page_within_half_a_second(page, browser):
    """Measured in the page: the edge's time on the trap's clock (the simulator's runs
    at wall-clock pace on this machine's clock) against the time the page shows it."""
    log_in(browser, page)
    element(browser, "body[data-stream=open]")
    shown = [element(browser, f"#edges li:nth-last-child({n})[data-shown-ms]", 30)
             for n in range(1, 6)]        # the first five edges the scenario fires
    latencies = [int(li.get_attribute("data-shown-ms")) - int(li.get_attribute("data-wall-ns")) / 1e6
                 for li in shown]
    print(f"edge to DOM (ms): {', '.join(f'{ms:.0f}' for ms in latencies)}")
    assert max(latencies) < EDGE_LATENCY_LIMIT_MS, latencies
    assert min(latencies) > -50           # one clock: an edge is never shown before it happened
    element(browser, "div.event img", 30)
    assert wait_until(lambda: browser.execute_script(
        "const imgs = [...document.querySelectorAll('div.event img')];"
        "return imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0)"))
    browser.execute_script("document.getElementById('walk').scrollIntoView()")
    screenshot(browser, "03-walk-test")


def test_a_pir_event_during_the_live_view_keeps_its_pre_trigger_frames(page, browser):
    """The page watching never starves the trap: events while it polls the view
    are stored with the frames from before the PIR edge."""
    log_in(browser, page)
    element(browser, "canvas#view[data-seq]")
    assert wait_until(lambda: len(browser.find_elements("css selector", "div.event")) >= 2, 30)
    seq = canvas_seq(browser)
    assert wait_until(lambda: canvas_seq(browser) >= seq + 8)        # still a live view
    seen = [d.get_attribute("data-event-id") for d in browser.find_elements("css selector", "div.event")]
    report = page.stop()
    events = {e["event_id"]: e for e in report["events"]}
    for event_id in seen:                 # each finished while the page was watching
        pre = [f for f in events[event_id]["frames"] if f["pre_trigger"]]
        assert len(pre) == 2, (event_id, len(pre))                 # burst.pre_trigger_frames
        assert any(f["kept"] and f["file"] for f in events[event_id]["frames"])
    assert report["summary"]["animal_events_lost"] == 0


def _set_config_text(browser, text: str) -> None:
    browser.execute_script("document.getElementById('config-text').value = arguments[0]", text)


def _check_config_lines(text: str, as_path: Path, tmp_path: Path) -> list[str]:
    """What `trapd check-config` prints for `text` if it were the file at `as_path`."""
    other = tmp_path / "check" / as_path.name
    other.parent.mkdir(exist_ok=True)
    other.write_text(text)
    result = subprocess.run([sys.executable, "-m", "trapd.cli", "check-config", str(other)],
                            capture_output=True, text=True)
    assert result.returncode == 1, result.stdout
    return [line.replace(str(other), str(as_path)) for line in result.stdout.splitlines()[:-1]]


def _config_loaded(browser) -> bool:
    return "station:" in browser.execute_script(
        "return document.getElementById('config-text').value")


def test_a_config_edit_with_an_error_shows_check_configs_message_and_changes_nothing(
        page, browser, tmp_path):
    log_in(browser, page)
    assert wait_until(lambda: _config_loaded(browser))
    bad = page.original.replace("pir_pin: 17", "pir_pin: 99")
    assert bad != page.original
    _set_config_text(browser, bad)
    browser.find_element("id", "apply-config").click()
    accept_dialog(browser)
    problem = element(browser, "#config-result .problem")
    expected = _check_config_lines(bad, page.config_path, tmp_path)
    shown = [b.text for b in browser.find_elements("css selector", "#config-result .problem")]
    assert shown == expected
    line = next(i for i, t in enumerate(bad.splitlines(), 1) if "pir_pin: 99" in t)
    assert f"config.yaml:{line}:" in shown[0] and problem.get_attribute("data-line") == str(line)
    assert page.config_path.read_text() == page.original
    assert not page.config_path.with_name("config.yaml.previous").exists()
    assert page.link().health()["deployment_id"] == "LOL-A017-2026-11"
    problem.click()                         # takes the technician to the line
    screenshot(browser, "04-config-error")


def test_a_good_config_edit_is_written_keeping_the_previous_file_and_reloaded(page, browser):
    log_in(browser, page)
    assert wait_until(lambda: _config_loaded(browser))
    text = browser.execute_script("return document.getElementById('config-text').value")
    good = text.replace("deployment_id: LOL-A017-2026-11", "deployment_id: LOL-A017-2026-12")
    assert good != text
    _set_config_text(browser, good)
    browser.find_element("id", "check-config").click()
    assert wait_until(lambda: "no problem" in text_of(browser, "config-result"))
    browser.find_element("id", "apply-config").click()
    accept_dialog(browser)
    assert wait_until(lambda: "Reload: applied" in text_of(browser, "config-result"), 60)
    assert page.config_path.read_text() == good
    assert page.config_path.with_name("config.yaml.previous").read_text() == page.original
    assert page.link().health()["deployment_id"] == "LOL-A017-2026-12"      # running it
    browser.execute_script("document.getElementById('config').scrollIntoView()")
    screenshot(browser, "05-config-applied")


def test_setting_the_clock_from_the_page_records_a_step(page, browser):
    page.link().set_clock(time.time_ns() - 93 * 10**9, "test: a trap 93 s slow")
    log_in(browser, page)
    assert wait_until(lambda: "behind" in text_of(browser, "clock-offset"))
    offset = float(browser.find_element("id", "clock-offset").get_attribute("data-offset-s"))
    assert -94 < offset < -92
    browser.execute_script("document.getElementById('health-block').scrollIntoView()")
    screenshot(browser, "06-health-clock-behind")
    browser.find_element("id", "set-clock").click()
    accept_dialog(browser)
    assert wait_until(lambda: "Clock set" in text_of(browser, "clock-result"))
    assert wait_until(lambda: len(page.clock_steps()) == 2)
    step_ns, source, confirmed_by = page.clock_steps()[-1]
    assert 92e9 < step_ns < 94e9 and source == "setup page" and confirmed_by == "setup page"
    assert wait_until(lambda: "matches" in text_of(browser, "clock-offset"), 15)
    screenshot(browser, "07-clock-set")


def test_over_https_the_phones_gps_fills_the_station_position(https_page, browser):
    """Browsers give the GPS only to secure contexts: https (the page's --tls-cert)."""
    from trapd.config import load_config
    page = https_page
    log_in(browser, page, url=page.field_url)
    element(browser, "#use-gps")
    assert browser.execute_script("return window.isSecureContext") is True
    browser.execute_cdp_cmd("Browser.grantPermissions",
                            {"origin": page.field_url, "permissions": ["geolocation"]})
    browser.execute_cdp_cmd("Emulation.setGeolocationOverride",
                            {"latitude": 43.20731, "longitude": 131.512345, "accuracy": 7.6})
    browser.find_element("id", "use-gps").click()
    assert wait_until(lambda: browser.find_element("id", "accuracy").get_attribute("value"))
    browser.find_element("id", "save-position").click()
    accept_dialog(browser)
    assert wait_until(lambda: "Reload: applied" in text_of(browser, "position-result"), 60)
    location = load_config(page.config_path).station.location
    assert (location.latitude, location.longitude, location.uncertainty_m) == (43.20731, 131.512345, 8)
    assert browser.get_cookie("trapd_session")["secure"]
    browser.execute_script("document.getElementById('position').scrollIntoView()")
    screenshot(browser, "08-position-from-gps")


def test_over_plain_http_the_page_asks_for_the_position_typed_in(page, browser):
    from trapd.config import load_config
    log_in(browser, page, url=page.field_url)
    element(browser, "#use-gps")
    assert browser.execute_script("return window.isSecureContext") is False
    assert wait_until(lambda: "only to https" in text_of(browser, "gps-note"))
    for field, value in (("latitude", "43.1102"), ("longitude", "131.4711"), ("accuracy", "15")):
        browser.find_element("id", field).send_keys(value)
    browser.find_element("id", "save-position").click()
    accept_dialog(browser)
    assert wait_until(lambda: "Reload: applied" in text_of(browser, "position-result"), 60)
    location = load_config(page.config_path).station.location
    assert (location.latitude, location.longitude, location.uncertainty_m) == (43.1102, 131.4711, 15)
    browser.execute_script("document.getElementById('position').scrollIntoView()")
    screenshot(browser, "08-position-typed")


def test_the_deployment_section_takes_a_setup_photo_ends_and_starts_a_deployment(page, browser):
    log_in(browser, page)
    element(browser, "#deployment-now dd[data-field=running]")
    browser.find_element("id", "technician").send_keys("A. Ranger")
    browser.find_element("id", "setup-photo").click()
    shown = element(browser, "#photo-result .photo[data-event-id] img", 30)
    assert wait_until(lambda: browser.execute_script(
        "const i = arguments[0]; return i.complete && i.naturalWidth > 0", shown))
    event_id = browser.find_element("css selector", "#photo-result .photo").get_attribute("data-event-id")
    assert f"setup photo stored as event {event_id}: {page.storage}" in text_of(browser, "photo-result")
    db = sqlite3.connect(f"file:{page.storage / 'queue.db'}?mode=ro", uri=True)
    try:
        assert db.execute("SELECT trigger, note FROM events WHERE event_id = ?", (event_id,)
                          ).fetchone() == ("setup", "taken from the setup page by A. Ranger")
    finally:
        db.close()
    offered = browser.find_element("id", "new-deployment").get_attribute("value")
    assert offered == _next_id_today(page, "LOL-A017-2026-11")
    browser.execute_script("document.getElementById('deployment').scrollIntoView()")
    screenshot(browser, "10-deployment")
    browser.find_element("id", "end-deployment").click()
    accept_dialog(browser)
    assert wait_until(lambda: "ended now" in text_of(browser, "end-result"), 30)
    assert "pickup photo stored" in text_of(browser, "photo-result")
    assert wait_until(lambda: "(pickup)" in text_of(browser, "deployment-now"), 15)
    browser.find_element("id", "start-deployment").click()
    accept_dialog(browser)
    assert wait_until(lambda: "started (was LOL-A017-2026-11)" in text_of(browser, "deployment-result"), 60)
    assert page.link().health()["deployment_id"] == offered
    browser.execute_script("document.getElementById('end-result').scrollIntoView()")
    screenshot(browser, "11-deployment-started")
    again = browser.find_element("id", "new-deployment")
    again.clear()
    again.send_keys("LOL-A017-2026-11")
    browser.find_element("id", "start-deployment").click()
    accept_dialog(browser)
    assert wait_until(lambda: "deployment LOL-A017-2026-11 already ran on this card: a new "
                      "deployment needs a new id" in text_of(browser, "deployment-result"))
    assert page.link().health()["deployment_id"] == offered


def _next_id_today(page, current: str) -> str:
    """What the page should offer after `current`: this month's or the next month's id."""
    import datetime as dt
    from trapd.cli_deployment import next_deployment_id
    from trapd.config import load_config
    today = dt.datetime.now(load_config(page.config_path).time.tz).date()
    return next_deployment_id(current, [current], today)


def test_the_page_is_unreachable_when_setup_mode_is_off(closed_page, browser):
    page = closed_page
    time.sleep(2)                            # the page has asked the daemon: off
    assert page.link().mode()["active"] is False
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", page.port), timeout=2)
    from selenium.common.exceptions import WebDriverException
    try:
        browser.get(page.url + "/")
        source = browser.page_source
    except WebDriverException as exc:       # some drivers raise instead of showing the error
        source = str(exc)
    assert "ERR_CONNECTION_REFUSED" in source
    screenshot(browser, "09-setup-mode-off")
    page.link().open_setup(10)               # what `trapd setup` does
    assert wait_until(lambda: port_open(page.port)), "setup mode on: the page opens"
    log_in(browser, page)
    element(browser, "canvas#view[data-seq]")
    assert wait_until(lambda: not port_open(page.port), 20), "setup mode over: the page closes"


def test_the_page_cost_bench_prints_its_table():
    """bench/setup_page_cost.py runs (briefly) so it cannot rot; no figure asserted."""
    _require_browser()
    result = subprocess.run([sys.executable, str(REPO / "bench" / "setup_page_cost.py"),
                             "--seconds", "2"], capture_output=True, text=True, timeout=300,
                            cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    for row in ("daemon (trapd sim)", "page (trapd setup-page)", "no browser", "page open"):
        assert row in result.stdout
