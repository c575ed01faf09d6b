"""Rules: what one setting in a YAML file accepts, and how to say so.

A `Rule` checks one plain value (after YAML has built it) and converts it for
its dataclass field; trapd/schema.py applies rules while it reads a file.
Numbers must be finite and in range; free text is bounded and free of
control characters.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Callable



def _unchanged(value: Any) -> Any:
    return value


def _no_note(value: Any) -> str:
    return ""


@dataclass(frozen=True)
class Rule:
    """What one setting accepts, and how to say so in an error message.

    `note(value)` may add why a rejected value is wrong when `expected`
    alone does not show it (a text's length, a number YAML read as text).
    """

    expected: str
    is_valid: Callable[[Any], bool]
    convert: Callable[[Any], Any] = _unchanged
    nullable: bool = False
    note: Callable[[Any], str] = _no_note

    def accepts(self, value: Any) -> bool:
        return (self.nullable and value is None) or self.is_valid(value)

    def to_field_value(self, value: Any) -> Any:
        return None if value is None else self.convert(value)

    def explain(self, value: Any) -> str:
        """`expected`, plus the note for this rejected value if there is one."""
        note = self.note(value)
        return f"{self.expected} ({note})" if note else self.expected


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """An int or a finite float (never a bool, inf or nan)."""
    if isinstance(value, float):
        return math.isfinite(value)
    return is_int(value)


def _number_text(number: float) -> str:
    return f"{number:g}" if isinstance(number, float) else str(number)


def _describe_range(noun: str, low: float, high: float, unit: str, nullable: bool) -> str:
    if high == math.inf:
        bounds = f"of at least {_number_text(low)}"
    else:
        bounds = f"from {_number_text(low)} to {_number_text(high)}"
    text = " ".join(part for part in (noun, bounds, unit) if part)
    return f"{text}, or null" if nullable else text


def _number_as_text_note(value: Any) -> str:
    """Why '1e30' failed: YAML 1.1 reads a number in exponent form without a dot as text."""
    if not isinstance(value, str):
        return ""
    try:
        as_float = float(value)
    except ValueError:
        return ""
    mantissa, e, exponent = value.strip().lower().partition("e")
    if not e or ("." in mantissa and exponent[:1] in ("+", "-")):
        return f"YAML reads {value} as text: write the number without quotes" \
            if math.isfinite(as_float) else ""
    mantissa = mantissa if "." in mantissa else mantissa + ".0"
    exponent = exponent if exponent[:1] in ("+", "-") else "+" + exponent
    return f"YAML reads {value} as text: a number in exponent form needs a dot and a sign, " \
           f"{mantissa}e{exponent}"


def integer(low: int, high: float, unit: str = "", *, nullable: bool = False,
            odd: bool = False) -> Rule:
    return Rule(
        expected=_describe_range("an odd integer" if odd else "an integer", low, high, unit, nullable),
        is_valid=lambda v: is_int(v) and low <= v <= high and (not odd or v % 2 == 1),
        nullable=nullable,
        note=_number_as_text_note,
    )


def integer_choice(choices: tuple[int, ...], unit: str) -> Rule:
    return Rule(
        expected=f"{' or '.join(map(str, choices))} {unit}",
        is_valid=lambda v: is_int(v) and v in choices,
    )


def number(low: float, high: float, unit: str = "", *, nullable: bool = False) -> Rule:
    """A finite number from `low` to `high` (inclusive), given to the field as a float."""
    return Rule(
        expected=_describe_range("a number", low, high, unit, nullable),
        is_valid=lambda v: is_number(v) and low <= v <= high,
        convert=float,
        nullable=nullable,
        note=_number_as_text_note,
    )


def choice(choices: tuple[str, ...], convert: Callable[[Any], Any] = _unchanged) -> Rule:
    return Rule(expected=f"one of {', '.join(choices)}",
                is_valid=lambda v: isinstance(v, str) and v in choices, convert=convert)


def flag() -> Rule:
    return Rule(expected="true or false", is_valid=lambda v: isinstance(v, bool))


def text(pattern: str, expected: str) -> Rule:
    compiled = re.compile(pattern)
    return Rule(
        expected=expected,
        is_valid=lambda v: isinstance(v, str) and compiled.fullmatch(v) is not None,
    )


# Characters no free text may hold: C0/C1 controls (tabs and line breaks
# included), line and paragraph separators, and lone surrogates (which no
# UTF-8 encoder accepts, so they would fail only when a photo is tagged).
_FORBIDDEN_CATEGORIES = ("Cc", "Cs", "Zl", "Zp")


def first_forbidden_character(value: str, allow_newlines: bool = False) -> str | None:
    """The first control or separator character in `value`, or None."""
    for character in value:
        if allow_newlines and character == "\n":
            continue
        if unicodedata.category(character) in _FORBIDDEN_CATEGORIES:
            return character
    return None


def is_free_text(value: Any, max_chars: int, *, allow_newlines: bool = False,
                 min_chars: int = 0) -> bool:
    return (isinstance(value, str) and min_chars <= len(value) <= max_chars
            and first_forbidden_character(value, allow_newlines) is None)


def free_text_note(value: Any, max_chars: int, allow_newlines: bool = False) -> str:
    """Why a text was rejected: its length, or the character that may not be in it."""
    if not isinstance(value, str):
        return ""
    if len(value) > max_chars:
        return f"this one has {len(value)} characters"
    character = first_forbidden_character(value, allow_newlines)
    if character is not None:
        return f"it holds the control character U+{ord(character):04X}"
    return ""


def free_text(max_chars: int, *, allow_newlines: bool = False, min_chars: int = 0,
              what: str = "") -> Rule:
    """Text a person types (a name, a title): bounded, without control characters."""
    shape = "text" if allow_newlines else "text on one line"
    size = (f"{min_chars} to {max_chars} characters" if min_chars
            else f"at most {max_chars} characters")
    expected = f"{shape}, {size}, without control characters{what}"
    return Rule(
        expected=expected,
        is_valid=lambda v: is_free_text(v, max_chars, allow_newlines=allow_newlines,
                                        min_chars=min_chars),
        note=lambda v: free_text_note(v, max_chars, allow_newlines),
    )
