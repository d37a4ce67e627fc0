"""The schema behind every setting: a dataclass field that knows its ``.ini`` section, help, unit and allowed values,
the check of a value against it, and the reading of ``.ini`` or flag text into its type.

:mod:`.config` declares the settings with :func:`setting`; the ``.ini`` files, the flags, their ``--help``, the
checks and the model header's record are all derived from those declarations.
"""

from __future__ import annotations

import ast
import math
from dataclasses import field, fields
from typing import Callable

from .errors import InputError

BOOLEAN_TEXT = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def setting(
    default,
    section: str,
    help: str,
    unit: str = "",
    choices: tuple = (),
    minimum: float | None = None,
    maximum: float | None = None,
    record: bool = True,
    empty: bool = True,
    check: Callable[[object], str] | None = None,
):
    """A settings field (:class:`.config.TrainConfig`, :class:`.config.GlandSettings`): its default, ``.ini`` section, help text, unit and allowed values.

    Args:
        default: the value when neither the ``.ini`` file nor a flag sets it.
        section: the ``.ini`` section (one of :data:`.config.SECTION_NAMES`).
        help: what the setting does, as ``labelreg train --help`` shows it.
        unit: the unit of a number (``mm``, ``steps``, ``voxels``), shown in the help.
        choices: the allowed values of a text setting (empty: any text).
        minimum, maximum: the allowed range of a number (each end included).
        record: whether the model header's training record keeps it (paths and output frequencies do not).
        empty: whether a list setting may be empty.
        check: what else is wrong with a value, in words ("" when nothing), for what the above cannot say.
    """
    metadata = {
        "section": section,
        "help": help,
        "unit": unit,
        "choices": tuple(choices),
        "minimum": minimum,
        "maximum": maximum,
        "record": record,
        "empty": empty,
        "check": check,
    }
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def validate_settings(settings, source: str):
    """Check every field of a settings dataclass (:class:`.config.TrainConfig`, :class:`.config.GlandSettings`) against its
    metadata; raises :class:`InputError` naming ``source``, the key, the value and what is allowed."""
    for f in fields(settings):
        problem = setting_problem(getattr(settings, f.name), f)
        if problem:
            raise InputError(source, f"{f.name} = {getattr(settings, f.name)!r}: {problem}")
    return settings


def setting_problem(value, f) -> str:
    """What is wrong with ``value`` for the field ``f`` ("" when nothing)."""
    meta, kind = f.metadata, f.type
    low, high = meta["minimum"], meta["maximum"]
    numbers = value if kind == "list" else [value]
    if kind == "bool":
        return "" if isinstance(value, bool) else "must be true or false"
    if kind == "list" and not (
        isinstance(value, list) and all(isinstance(n, int) and not isinstance(n, bool) for n in value)
    ):
        return "must be a list of whole numbers, e.g. [0, 1, 2]"
    if kind == "list" and not value and not meta["empty"]:
        return "must name at least one, e.g. [0, 1, 2]"
    if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
        return "must be a whole number"
    if kind == "float" and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
        return "must be a finite number"
    if kind == "str" and not isinstance(value, str):
        return "must be text"
    if meta["choices"] and value not in meta["choices"]:
        return f"allowed: {', '.join(meta['choices'])}"
    problem = meta["check"](value) if meta["check"] is not None else ""
    if problem:
        return problem
    if low is not None and any(n < low or n > high for n in numbers):
        return f"allowed: {low:g} to {high:g}" + (f" {meta['unit']}" if meta["unit"] else "")
    return ""


def parse_value(text: str, f, source: str = "the command line"):
    """Convert ``.ini`` or flag text to the type of the field ``f`` (lists as ``[0, 1, 2]``, booleans as true/false)."""
    text, kind = text.strip(), f.type
    try:
        if kind == "bool":
            return BOOLEAN_TEXT[text.lower()]
        if kind == "int":
            number = float(text)
            if not number.is_integer():
                raise ValueError
            return int(number)
        if kind == "float":
            return float(text)
        if kind == "list":
            value = ast.literal_eval(text) if text else []
            return list(value) if isinstance(value, (list, tuple)) else [value]
    except (KeyError, ValueError, SyntaxError, TypeError):
        allowed = {
            "bool": "true or false",
            "int": "a whole number",
            "float": "a number",
            "list": "a list such as [0, 1, 2]",
        }[kind]
        raise InputError(source, f"{f.name} = {text!r}: cannot be read; allowed: {allowed}") from None
    return text
