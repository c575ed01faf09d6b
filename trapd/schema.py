"""Checking a YAML file a person edits against frozen dataclasses.

Used for config.yaml (trapd/config.py) and the simulator's scenario files
(hw_sim/scenario.py), so both report mistakes the same way: every mistake at
once, each with its file, line, key path, the value found and what would be
valid.

The YAML is composed into a node tree with PyYAML's safe loader (nothing in
the file is ever executed) and the tree is walked against the dataclasses.
A dataclass field says what it holds in its metadata:

    setting(rule, default)     one value, checked by a `Rule`
    section(cls)               a nested mapping read as `cls`
    items(cls)                 a list of mappings, each read as `cls`

A field without a default is required. Rules for one value are in
trapd/schema_rules.py; rules that link fields live in each `Section.validate()`.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import reprlib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

# The rules, importable from here with the rest of the machinery.
from trapd.schema_rules import (  # noqa: F401
    Rule,
    choice,
    first_forbidden_character,
    flag,
    free_text,
    integer,
    integer_choice,
    is_free_text,
    is_int,
    is_number,
    number,
    text,
)

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_NULL_TAG = "tag:yaml.org,2002:null"


class _NoValue:
    def __repr__(self) -> str:
        return "NO_VALUE"


NO_VALUE = _NoValue()
"""`Problem.value` when there is no value to show (missing or unknown key, ...)."""

INVALID = object()  # what the reader returns for a value it has reported


# --------------------------------------------------------------------------
# Problems
# --------------------------------------------------------------------------

_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxstring = 80
_SHORT_REPR.maxother = 80


def show(value: object) -> str:
    """A value as a person would recognise it from the YAML, kept short."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, tuple):
        value = list(value)
    return _SHORT_REPR.repr(value)


@dataclass(frozen=True)
class Problem:
    """One mistake in a file.

    `path` is the dotted key path ("filter.pixel_threshold", "animals[2].cross_s"),
    or "" for the file as a whole; `line` is 1-based, None when no line
    applies. `expected` says what a valid value looks like; when
    `value is NO_VALUE` (a missing, unknown or duplicate key, a YAML syntax
    error, an unreadable file) it is the whole message.
    """

    path: str
    line: int | None
    value: object
    expected: str
    source: str = "config.yaml"

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        if self.value is NO_VALUE:
            subject = f"{self.path}: " if self.path else ""
            return f"{where}: {subject}{self.expected}"
        return f"{where}: {self.path} = {show(self.value)}: expected {self.expected}"


ErrorType = Callable[[list[Problem]], Exception]
"""How a caller turns problems into its own exception (ConfigError, ScenarioError)."""


# --------------------------------------------------------------------------
# Fields
# --------------------------------------------------------------------------


def setting(rule: Rule, default: Any = dataclasses.MISSING) -> Any:
    """A dataclass field read from one YAML value; no default = required."""
    return field(default=default, metadata={"rule": rule})


def section(cls: type, *, required: bool = False) -> Any:
    """A dataclass field read from a nested YAML mapping."""
    if required:
        return field(metadata={"section": cls})
    return field(default_factory=cls, metadata={"section": cls})


def items(cls: type, default: tuple = (), *, min_items: int = 0, what: str = "") -> Any:
    """A dataclass field read from a YAML list of mappings, each a `cls`; a tuple.

    `what` describes one entry in messages ("an animal crossing")."""
    return field(default=default, metadata={"items": cls, "min_items": min_items, "what": what})


def is_required(config_field: dataclasses.Field) -> bool:
    return (
        config_field.default is dataclasses.MISSING
        and config_field.default_factory is dataclasses.MISSING
    )


def schema_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of `cls` that a file may set."""
    return [f for f in fields(cls) if {"rule", "section", "items"} & set(f.metadata)]


class Section:
    """Base of every dataclass read from a file."""

    def validate(self) -> list[Problem]:
        """Rules linking this section's fields; [] when they hold.

        Problem paths are relative to the section and lines are None: the
        reader fills both in from the file.
        """
        return []


# --------------------------------------------------------------------------
# Reading the YAML node tree
# --------------------------------------------------------------------------


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _line(node: Node) -> int:
    return node.start_mark.line + 1


def _key_text(node: Node) -> str:
    """A key as it appears in messages: quoted when empty or unprintable."""
    if isinstance(node, ScalarNode):
        return node.value if node.value.isprintable() and node.value else repr(node.value)
    return "<list>" if isinstance(node, SequenceNode) else "<mapping>"


def _kind(node: Node) -> str:
    if node.tag not in (_MAP_TAG, _SEQ_TAG) and not isinstance(node, ScalarNode):
        return f"a value tagged {node.tag} (YAML tags are not allowed)"
    return "a list" if isinstance(node, SequenceNode) else "a single value"


def _required_keys(cls: type) -> str:
    required = [f.name for f in schema_fields(cls) if is_required(f)]
    return f"with {', '.join(required)}" if required else "of 'key: value' lines"


def _expected_for(config_field: dataclasses.Field) -> str:
    metadata = config_field.metadata
    if "section" in metadata:
        return f"a section {_required_keys(metadata['section'])}"
    if "items" in metadata:
        return f"a list of entries, each {_required_keys(metadata['items'])}"
    return metadata["rule"].expected


def _unknown_key_message(key: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    if close:
        return f"unknown key; did you mean '{close[0]}'?"
    return f"unknown key; allowed here: {', '.join(allowed)}"


def _construction_failure(error: Exception) -> str:
    if isinstance(error, yaml.MarkedYAMLError) and error.problem:
        return error.problem
    return f"{type(error).__name__}: {error}"


class Reader:
    """Walks a composed YAML tree against dataclasses, collecting every
    problem instead of stopping at the first."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[Problem] = []
        self.key_lines: dict[str, int] = {}  # key path -> line of the key

    def report(self, path: str, line: int | None, expected: str, value: object = NO_VALUE) -> None:
        self.problems.append(Problem(path, line, value, expected, self.source))

    def read_section(self, cls: type, node: Node, path: str, line: int | None) -> Any:
        """The `cls` instance for a mapping node, or INVALID once reported."""
        entries = self._entries(node, path, line)
        if entries is INVALID:
            return INVALID
        self._report_unknown_keys(cls, entries, path)
        values = {}
        for config_field in schema_fields(cls):
            field_path = _join(path, config_field.name)
            if config_field.name in entries:
                key_line, value_node = entries[config_field.name]
                values[config_field.name] = self._read_field(config_field, value_node, field_path, key_line)
            elif is_required(config_field):
                self.report(field_path, line, f"missing; expected {_expected_for(config_field)}")
                values[config_field.name] = INVALID
        if any(value is INVALID for value in values.values()):
            return INVALID
        result = cls(**values)
        self._report_validation(result, path)
        return result

    def _entries(self, node: Node, path: str, line: int | None) -> Any:
        """{key: (key line, value node)} of a mapping; {} for null; INVALID once reported."""
        if isinstance(node, ScalarNode) and node.tag == _NULL_TAG:
            return {}
        if not isinstance(node, MappingNode) or node.tag != _MAP_TAG:
            expected = f"expected a section of indented 'key: value' lines, not {_kind(node)}"
            self.report(path, line or _line(node), expected)
            return INVALID
        entries: dict[str, tuple[int, Node]] = {}
        for key_node, value_node in node.value:
            key, key_line = _key_text(key_node), _line(key_node)
            if key in entries:
                first_line = entries[key][0]
                self.report(
                    _join(path, key),
                    key_line,
                    f"duplicate key (first at line {first_line}); YAML would silently use only the last one",
                )
            entries[key] = (key_line, value_node)
            self.key_lines[_join(path, key)] = key_line
        return entries

    def _report_unknown_keys(self, cls: type, entries: dict, path: str) -> None:
        allowed = [config_field.name for config_field in schema_fields(cls)]
        for key, (key_line, _) in entries.items():
            if key not in allowed:
                self.report(_join(path, key), key_line, _unknown_key_message(key, allowed))

    def _read_field(self, config_field: dataclasses.Field, node: Node, path: str, line: int) -> Any:
        metadata = config_field.metadata
        if "section" in metadata:
            return self.read_section(metadata["section"], node, path, line)
        if "items" in metadata:
            return self._read_items(config_field, node, path, line)
        return self._read_setting(metadata["rule"], node, path, line)

    def _read_items(self, config_field: dataclasses.Field, node: Node, path: str, line: int) -> Any:
        cls, least = config_field.metadata["items"], config_field.metadata["min_items"]
        what = config_field.metadata["what"] or f"entry {_required_keys(cls)}"
        if isinstance(node, ScalarNode) and node.tag == _NULL_TAG:
            entries = []
        elif isinstance(node, SequenceNode) and node.tag == _SEQ_TAG:
            entries = node.value
        else:
            self.report(path, line, f"expected a list ('- ...' lines or [...]), each {what}, "
                                    f"not {_kind(node)}")
            return INVALID
        if len(entries) < least:
            self.report(path, line, f"expected at least {least} {'entry' if least == 1 else 'entries'},"
                                    f" each {what}")
            return INVALID
        values = [self.read_section(cls, entry, f"{path}[{index}]", _line(entry))
                  for index, entry in enumerate(entries, 1)]
        return INVALID if any(value is INVALID for value in values) else tuple(values)

    def _read_setting(self, rule: Rule, node: Node, path: str, line: int) -> Any:
        value = self._construct(node, path, line)
        if value is INVALID:
            return INVALID
        if not rule.accepts(value):
            self.report(path, line, rule.explain(value), value)
            return INVALID
        return rule.to_field_value(value)

    def _construct(self, node: Node, path: str, line: int) -> Any:
        """The plain Python value of a node, built by the safe constructor only."""
        # PyYAML's constructors fail in many ways on malformed tagged values
        # (`!!int x` is a ValueError, `!!bool x` a KeyError, unknown tags a
        # ConstructorError); every one of them is the author's to fix.
        try:
            return SafeConstructor().construct_object(node, deep=True)
        except Exception as error:
            reason = _construction_failure(error)
            self.report(path, line, f"cannot be read ({reason}); expected a plain value without a '!!' tag")
            return INVALID

    def _report_validation(self, result: Section, path: str) -> None:
        validate = getattr(result, "validate", None)
        for problem in validate() if validate else []:
            full_path = _join(path, problem.path)
            self.problems.append(
                dataclasses.replace(
                    problem, path=full_path, line=self.key_lines.get(full_path), source=self.source
                )
            )


# --------------------------------------------------------------------------
# Whole files
# --------------------------------------------------------------------------


def file_problem(message: str, source: str, line: int | None = None) -> list[Problem]:
    """The one problem of a file as a whole (path "")."""
    return [Problem("", line, NO_VALUE, message, source)]


def _syntax_problem(error: yaml.YAMLError, text_: str, source: str) -> list[Problem]:
    if isinstance(error, yaml.reader.ReaderError):
        line = text_.count("\n", 0, error.position) + 1
        message = f"YAML syntax error: special character U+{error.character:04X} is not allowed"
        return file_problem(message, source, line)
    mark = error.problem_mark or error.context_mark
    hint = "check indentation (spaces, not tabs), colons and quotes on this line and the one above"
    message = f"YAML syntax error: {error.problem or error.context}; {hint}"
    return file_problem(message, source, mark.line + 1 if mark else None)


def compose(text_: str, source: str, error: ErrorType, empty_message: str) -> Node:
    """The YAML node tree of `text_`; raises `error(problems)` if it is not
    valid, non-empty YAML."""
    try:
        root = yaml.compose(text_, Loader=yaml.SafeLoader)
    except (yaml.reader.ReaderError, yaml.MarkedYAMLError) as exc:
        raise error(_syntax_problem(exc, text_, source)) from None
    except RecursionError:
        raise error(file_problem("YAML is nested too deeply to read", source)) from None
    if root is None:
        raise error(file_problem(empty_message, source))
    return root


def read_text(path: str | os.PathLike, source: str, error: ErrorType) -> str:
    """A UTF-8 text file's contents; raises `error(problems)` naming the file
    (and the line of the first byte that is not UTF-8)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise error(file_problem(f"cannot read the file: {exc.strerror or exc}", source)) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        message = "the file is not UTF-8 text; save it as UTF-8 in the editor"
        raise error(file_problem(message, source, line)) from None


@dataclass
class Document:
    """A file read into its top dataclass, with the line of every key."""

    value: Any
    key_lines: dict[str, int]


def read_document(cls: type, text_: str, source: str, error: ErrorType) -> Document:
    """`text_` read as a `cls`; raises `error(problems)` listing every problem, by line."""
    sections = ", ".join(f"{f.name}:" for f in schema_fields(cls) if "section" in f.metadata)
    keys = ", ".join(f"{f.name}:" for f in schema_fields(cls) if is_required(f))
    empty = f"the file has no settings; expected {'sections ' + sections if sections else keys}"
    reader = Reader(source)
    value = reader.read_section(cls, compose(text_, source, error, empty), "", None)
    if reader.problems:
        raise error(sorted(reader.problems, key=lambda problem: problem.line or 0))
    return Document(value, reader.key_lines)
