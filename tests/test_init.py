"""`trapd init`: station configs for a fleet from the shipped template and a stations CSV."""

from pathlib import Path

import yaml
from conftest import trapd

from trapd.config import DEFAULT_CONFIG_PATH, load_config

HEADER = "station_id,deployment_id,latitude,longitude,camera_height_m,camera_heading_deg"
ROWS = {
    "TRAP-01": ("TRAP-01-2027-03", 43.2011, 131.5012, 0.5, 180),
    "TRAP-02": ("TRAP-02-2027-03", -12.75, -45.5, 1.2, 0),
    "TRAP-07": ("TRAP-07-2027-04", 43.0, 131.25, 0.75, 359),
}


def write_csv(path: Path, lines: list[str], *, encoding: str = "utf-8") -> Path:
    path.write_text("\n".join(lines) + "\n", encoding=encoding)
    return path


def fleet_csv(path: Path) -> Path:
    return write_csv(path, [HEADER] + [",".join(map(str, (station, *row)))
                                       for station, row in ROWS.items()])


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def template_line(starts: str) -> int:
    lines = DEFAULT_CONFIG_PATH.read_text().splitlines()
    return next(n for n, line in enumerate(lines, 1) if line.lstrip().startswith(starts))


def assert_row_values(config_path: Path, station: str, row: tuple) -> None:
    config = load_config(config_path)
    deployment, latitude, longitude, height, heading = row
    assert config.station.station_id == station
    assert config.station.deployment_id == deployment
    assert (config.station.location.latitude, config.station.location.longitude) == \
        (latitude, longitude)
    assert (config.station.camera.height_m, config.station.camera.heading_deg) == (height, heading)


def test_all_rows_give_configs_check_config_accepts_with_the_rows_values(tmp_path):
    csv_path = fleet_csv(tmp_path / "stations.csv")
    result = trapd("init", "--csv", csv_path, "--all", "--out-dir", tmp_path / "fleet")
    assert "3 config(s) written" in result.stdout
    template = DEFAULT_CONFIG_PATH.read_text()
    for station, row in ROWS.items():
        path = tmp_path / "fleet" / station / "config.yaml"
        checked = trapd("check-config", path)
        assert f"{path}: OK" in checked.stdout and station in checked.stdout
        assert_row_values(path, station, row)
        text = path.read_text()
        # the template's comments and every other setting are kept, line for line
        assert [l for l in text.splitlines() if l.lstrip().startswith("#")] == \
            [l for l in template.splitlines() if l.lstrip().startswith("#")]
        assert yaml.safe_load(text)["burst"] == yaml.safe_load(template)["burst"]
        # the template's elevation is its own station's: not given here, so unknown
        assert load_config(path).station.location.elevation_m is None


def test_one_station_to_a_chosen_file_with_the_optional_columns(tmp_path):
    csv_path = write_csv(tmp_path / "stations.csv", [
        HEADER + ",elevation_m,uncertainty_m,camera_tilt_deg,location_publish",
        "TRAP-01,TRAP-01-2027-03,43.2,131.5,0.5,180,410,25,-10,rounded",
        "TRAP-02,TRAP-02-2027-03,43.3,131.6,,,,,,",
    ])
    template = tmp_path / "template.yaml"
    template.write_text(DEFAULT_CONFIG_PATH.read_text().replace(
        'owner: "Land of the Leopard National Park"', 'owner: "Project Lynx"'))
    one = tmp_path / "one.yaml"
    trapd("init", "--csv", csv_path, "--station", "TRAP-01", "--out", one, "--template", template)
    assert load_config(one).station.owner == "Project Lynx"
    location = load_config(one).station.location
    assert (location.elevation_m, location.uncertainty_m, location.publish) == \
        (410, 25, "rounded")
    assert load_config(one).station.camera.tilt_deg == -10
    assert files_under(tmp_path) == sorted([csv_path, one, template])   # the chosen row only

    # empty cells are "not measured": null where the config allows it
    two = tmp_path / "two.yaml"
    result = trapd("init", "--csv", csv_path, "--station", "TRAP-02", "--out", two, check=False)
    assert result.returncode == 1
    assert "line 3, column uncertainty_m: '' is not an integer of at least 1" in result.stderr
    assert not two.exists()


def test_a_bad_latitude_names_file_line_and_column_and_nothing_is_written(tmp_path):
    lines = [HEADER] + [f"TRAP-{n:02},TRAP-{n:02}-2027-03,43.{n},131.5,0.5,180"
                        for n in range(1, 8)]
    lines.append("TRAP-09,TRAP-09-2027-03,91.2,131.5,0.5,180")         # line 9
    csv_path = write_csv(tmp_path / "stations.csv", lines)
    out = tmp_path / "fleet"
    for choice in (["--station", "TRAP-09"], ["--all"]):
        result = trapd("init", "--csv", csv_path, *choice, "--out-dir", out, check=False)
        assert result.returncode == 1
        first, config_line = result.stderr.splitlines()[:2]
        assert first.endswith("stations.csv line 9, column latitude: '91.2' is not a number "
                              "from -90 to 90 degrees north (WGS84)")
        # the config error as check-config words it, at the template's line
        assert f":{template_line('latitude:')}: station.location.latitude = 91.2: expected" \
            in config_line
        assert "nothing written" in result.stderr and "Traceback" not in result.stderr
        assert files_under(out) == []


def test_bom_semicolons_and_decimal_commas_from_a_european_spreadsheet(tmp_path):
    csv_path = write_csv(tmp_path / "stations.csv", [
        HEADER.replace(",", ";"),
        "TRAP-01;TRAP-01-2027-03;43,2011;131,5012;0,5;180",
        "\"TRAP-02\";TRAP-02-2027-03;-12,75;-45,5;1,2;0",
    ], encoding="utf-8-sig")
    assert csv_path.read_bytes().startswith(b"\xef\xbb\xbf")
    trapd("init", "--csv", csv_path, "--all", "--out-dir", tmp_path / "fleet")
    for station in ("TRAP-01", "TRAP-02"):
        path = tmp_path / "fleet" / station / "config.yaml"
        trapd("check-config", path)
        assert_row_values(path, station, ROWS[station])


def test_duplicate_station_ids_name_both_lines(tmp_path):
    csv_path = write_csv(tmp_path / "stations.csv", [
        HEADER,
        "TRAP-01,TRAP-01-2027-03,43.2,131.5,0.5,180",
        "TRAP-02,TRAP-02-2027-03,43.3,131.5,0.5,180",
        "TRAP-01,TRAP-01-2027-04,43.4,131.5,0.5,180",
    ])
    result = trapd("init", "--csv", csv_path, "--all", "--out-dir", tmp_path / "fleet",
                   check=False)
    assert result.returncode == 1
    assert "stations.csv lines 2 and 4: both have station_id TRAP-01" in result.stderr
    assert files_under(tmp_path / "fleet") == []

    copied_down = csv_path.read_text().replace("TRAP-01,TRAP-01-2027-04", "TRAP-03,TRAP-02-2027-03")
    csv_path.write_text(copied_down)
    result = trapd("init", "--csv", csv_path, "--station", "TRAP-03", check=False)
    assert "stations.csv lines 3 and 4: both have deployment_id TRAP-02-2027-03" in result.stderr


def test_an_unknown_column_is_named(tmp_path):
    csv_path = write_csv(tmp_path / "stations.csv", [
        HEADER + ",camera_hieght_m", "TRAP-01,TRAP-01-2027-03,43.2,131.5,0.5,180,0.4"])
    result = trapd("init", "--csv", csv_path, "--all", "--out-dir", tmp_path / "fleet",
                   check=False)
    assert result.returncode == 1
    assert "stations.csv line 1: unknown column 'camera_hieght_m'" in result.stderr


def test_a_file_that_is_not_utf8_says_how_to_save_it(tmp_path):
    csv_path = write_csv(tmp_path / "stations.csv", [
        HEADER, "TRAP-01,TRAP-01-2027-03,43.2,131.5,0.5,180",
        "TRAP-02,TRAP-02-2027-03,43.3,131.5,0.5,180,",
        "TRAP-03,TRAP-03-2027-03,43.4,131.5,0.5,180",
    ])
    csv_path.write_bytes(csv_path.read_bytes().replace(b"180,\n", b"180,\xe9\n"))  # cp1252 é
    result = trapd("init", "--csv", csv_path, "--all", "--out-dir", tmp_path / "fleet",
                   check=False)
    assert result.returncode == 1
    assert "stations.csv line 3 is not UTF-8" in result.stderr and "CSV UTF-8" in result.stderr


def test_an_existing_config_is_replaced_only_with_force_and_kept_as_previous(tmp_path):
    csv_path = fleet_csv(tmp_path / "stations.csv")
    out = tmp_path / "fleet"
    trapd("init", "--csv", csv_path, "--station", "TRAP-07", "--out-dir", out)
    existing = out / "TRAP-07" / "config.yaml"
    hand_edited = existing.read_text().replace("pir_pin: 17", "pir_pin: 22")
    existing.write_text(hand_edited)

    refused = trapd("init", "--csv", csv_path, "--all", "--out-dir", out, check=False)
    assert refused.returncode == 1
    assert "already exist" in refused.stderr and "--force" in refused.stderr
    assert existing.read_text() == hand_edited
    assert files_under(out) == [existing]       # not even the other stations' files

    forced = trapd("init", "--csv", csv_path, "--all", "--out-dir", out, "--force")
    assert "old file kept as config.yaml.previous" in forced.stdout
    assert (out / "TRAP-07" / "config.yaml.previous").read_text() == hand_edited
    assert load_config(existing).hardware.pir_pin == 17
    assert len(files_under(out)) == 4
