"""Changing settings in a station's config.yaml the way a technician would by hand:
only the values change, on their own lines, with every comment kept. The new file is
checked with check-config's rules before it replaces the old one, which is kept beside
it as `<name>.previous`."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from trapd.config import config_folder, parse_config_lines
from trapd.errors import ConfigError, TrapdError
from trapd.schema import read_text

# key: value  # comment   (the value is what changes; indentation and comment stay)
VALUE_LINE = re.compile(r"^(?P<key>\s*[\w-]+:[ \t]*)(?P<value>[^#\r\n]*?)(?P<rest>[ \t]*(#.*)?\r?\n?)$")


class ConfigEditError(TrapdError, ValueError):
    """The change cannot be made (a key not in the file, a folder not writable): the
    file is unchanged."""


def set_values(path: str | os.PathLike, values: dict[str, object]) -> Path:
    """Write `values` ({"station.deployment_id": "X", ...}, keys already in the file) into
    the config at `path`; ConfigError (with line numbers) if the result is not valid,
    ConfigEditError if it cannot be written."""
    source = os.fspath(path)
    text = read_text(source, source, ConfigError)
    return replace_text(source, with_values(text, source, values))


def with_values(text: str, source: str, values: dict[str, object]) -> str:
    """`text`, a valid config read from `source`, with `values` set on their own lines
    and every comment kept. Not checked: replace_text checks what it writes."""
    _, key_lines = parse_config_lines(text, source, config_folder(source))
    lines = text.splitlines(keepends=True)
    for key, value in values.items():
        if key not in key_lines:
            raise ConfigEditError(f"{source} has no {key}: add it by hand first")
        number = key_lines[key] - 1
        match = VALUE_LINE.match(lines[number])
        if match is None:
            raise ConfigEditError(f"{source} line {number + 1}: {key} is not a one-line value")
        lines[number] = f"{match['key']}{_yaml_scalar(value)}{match['rest']}"
    return "".join(lines)


def replace_text(path: str | os.PathLike, new_text: str) -> Path:
    """Replace the whole config with `new_text`, checked with check-config's rules
    first (ConfigError with line numbers: the file is unchanged); the old file, if
    there is one, is kept as .previous."""
    source = os.fspath(path)
    parse_config_lines(new_text, source, config_folder(source))
    target = Path(source)
    try:
        _replace_keeping_previous(target, new_text)
    except OSError as exc:
        raise ConfigEditError(f"cannot write {source}: {exc.strerror or exc}; it is unchanged"
                              ) from None
    return target


def restore_previous(path: str | os.PathLike) -> None:
    """Put back the config that replace_text or set_values kept as .previous."""
    target = Path(path)
    _replace_keeping_previous(target, target.with_name(target.name + ".previous").read_text())


def _replace_keeping_previous(target: Path, new_text: str) -> None:
    existed = target.exists()
    if existed:
        shutil.copy2(target, target.with_name(target.name + ".previous"))
    temporary = target.with_name(f".{target.name}.new")
    try:
        with open(temporary, "w", encoding="utf-8") as f:
            f.write(new_text)
            f.flush()
            os.fsync(f.fileno())
        if existed:
            shutil.copymode(target, temporary)
        os.replace(temporary, target)
    except OSError:
        temporary.unlink(missing_ok=True)      # a full card: leave no half-written copy
        raise


def _yaml_scalar(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return json.dumps(value)     # a JSON string is a YAML string, quoted whatever it holds
    return repr(value)
