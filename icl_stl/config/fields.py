"""How settings classes check themselves: field domains as annotations, and pydantic's
ValidationError turned into the one line of a ConfigError ("train.lr must be a number > 0.0, got
0"). The settings themselves are in icl_stl/config/__init__.py.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from typing import Annotated, Any

import pydantic
from pydantic import (
    AfterValidator,
    BeforeValidator,
    PlainValidator,
    Strict,
    ValidationError,
)
from pydantic_core import ArgsKwargs, PydanticCustomError


class ConfigError(ValueError):
    """A setting is missing, of the wrong type or outside its domain."""


def fail(path: str, value: Any, domain: str) -> typing.NoReturn:
    raise ConfigError(f"{path} must be {domain}, got {value!r}")


def _outside(value: Any, lo: Any, hi: Any, lo_open: bool = False, integer: bool = False
             ) -> str | None:
    """The domain `value` falls outside of, as the messages word it, or None if it is inside."""
    if integer:
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            return "an integer " + (f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
                                    if lo is not None else f"<= {hi}")
        return None
    if lo is not None and (value < lo or (lo_open and value == lo)):
        return f"a number {'>' if lo_open else '>='} {lo}"
    return f"a number <= {hi}" if hi is not None and value > hi else None


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


# Checks of single values outside a settings class (a command-line `member`, say).

def check_int(path: str, value: Any, lo: int | None = None, hi: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        fail(path, value, "an integer")
    if domain := _outside(value, lo, hi, integer=True):
        fail(path, value, domain)


def check_float(path: str, value: Any, lo: float | None = None, hi: float | None = None,
                lo_open: bool = False) -> None:
    if not _is_number(value):
        fail(path, value, "a finite number")
    if domain := _outside(value, lo, hi, lo_open):
        fail(path, value, domain)


def check_choice(path: str, value: Any, choices: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in choices:
        fail(path, value, f"one of {list(choices)}")


# ---------------------------------------------------------------------------------------------
# Field domains, as annotations. Scalars are strict (no "3" for 3, no true for 1), except that a
# whole float is the integer a user means (YAML reads `steps: 1e3` as 1000.0) and an int is a
# number where a float is expected.


def _domain(outside: typing.Callable[[Any], str | None]) -> AfterValidator:
    """A check of a typed value: `outside(value)` is the domain it misses, or None."""
    def check(value: Any) -> Any:
        if domain := outside(value):
            raise PydanticCustomError("domain", "{domain}", {"domain": domain})
        return value
    return AfterValidator(check)


def ensure(ok: typing.Callable[[Any], bool], domain: str) -> AfterValidator:
    return _domain(lambda v: None if ok(v) else domain)


def _in_range(lo: Any, hi: Any, lo_open: bool = False, integer: bool = False) -> AfterValidator:
    return _domain(lambda v: _outside(v, lo, hi, lo_open, integer))


def _whole_float_as_int(value: Any) -> Any:
    exact = isinstance(value, float) and value.is_integer() and abs(value) < 2**53
    return int(value) if exact else value


Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]


def Int(lo: int | None = None, hi: int | None = None) -> Any:
    return Annotated[int, BeforeValidator(_whole_float_as_int), Strict(),
                     _in_range(lo, hi, integer=True)]


def Float(lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> Any:
    return Annotated[float, Strict(), _in_range(lo, hi, lo_open)]  # finite: the config says so


def Number(lo: float | None = None, hi: float | None = None) -> Any:
    """Like Float, but an int stays an int: for lists that run names hash as written."""
    return Annotated[int | float, PlainValidator(lambda v: v),
                     ensure(_is_number, "a finite number"), _in_range(lo, hi)]


def Choice(choices: tuple[str, ...]) -> Any:
    return Annotated[str, Strict(), ensure(lambda v: v in choices, f"one of {list(choices)}")]


def List(item: Any, *checks: AfterValidator) -> Any:
    """A list (not a tuple) of `item`, the list as a whole passing `checks`."""
    return Annotated[list[item], Strict(), *checks]


def NonEmpty(domain: str = "a non-empty list") -> AfterValidator:
    return ensure(bool, domain)


NO_REPEATS = ensure(lambda v: len(set(v)) == len(v), "a list without repeated values")


_CONFIG = pydantic.ConfigDict(extra="forbid", allow_inf_nan=False)


def settings(path: str) -> typing.Callable[[type], type]:
    """Make `cls` a pydantic dataclass whose constructor checks every field and raises a
    one-line ConfigError; `path` is where it sits in the full config ("train.curriculum")."""
    def make(cls: type) -> type:
        cls = pydantic.dataclasses.dataclass(cls, config=_CONFIG)
        validated_init = cls.__init__

        @functools.wraps(validated_init)
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            try:
                validated_init(self, *args, **kwargs)
            except ValidationError as err:
                raise ConfigError(one_line(err, cls, path)) from None

        cls.__init__, cls._section = __init__, path
        if "validate" not in vars(cls):
            cls.validate = revalidate
        return cls
    return make


def revalidate(self: Any, path: str | None = None) -> None:
    """Check the settings again (construction already did; this catches later assignments)."""
    values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
    from_container(type(self), values, self._section if path is None else path)


def from_container(cls: type, data: Any, path: str) -> Any:
    """Build dataclass `cls` from a plain dict; a ConfigError names the setting of any problem.
    `path` is where `data` sits in the full config ("" for the top)."""
    if not hasattr(cls, "__pydantic_validator__"):  # a plain dataclass of an entry point
        cls = _checked_plain_dataclass(cls)
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'the config'} must be a mapping of settings, got {data!r}")
    obj = cls.__new__(cls)
    try:  # what the constructor does (a strict dataclass validates keywords, not a dict)
        cls.__pydantic_validator__.validate_python(ArgsKwargs((), data), self_instance=obj)
    except ValidationError as err:
        raise ConfigError(one_line(err, cls, path)) from None
    return obj


@functools.cache
def _checked_plain_dataclass(cls: type) -> type:
    # Strict: its fields carry no domains of their own; its settings sections still take dicts.
    return pydantic.dataclasses.dataclass(cls, config=pydantic.ConfigDict(strict=True, **_CONFIG))


def to_container(obj: Any) -> dict:
    """A config as a plain dict (for checkpoints, wandb and summary files)."""
    return dataclasses.asdict(obj)


# ---------------------------------------------------------------------------------------------
# pydantic's ValidationError (many lines, its own words) as the one line of a ConfigError


def one_line(err: ValidationError, root: type, prefix: str) -> str:
    """The first problem of `err` (unknown keys first) as "<path> must be <domain>, got <value>".
    `root` is the class validated, at `prefix` in the full config."""
    errors = err.errors()
    unknown = [e for e in errors if e["type"] in ("unexpected_keyword_argument", "invalid_key")]
    if unknown:
        where = unknown[0]["loc"][:-1]
        keys = sorted(str(e["loc"][-1]) for e in unknown if e["loc"][:-1] == where)
        known = sorted(f.name for f in dataclasses.fields(_class_at(root, where)))
        path = _dotted(prefix, where)
        return (f"{f'{path} has' if path else 'the config has'} unknown setting(s) {keys}; "
                f"known: {known}")
    e = errors[0]
    ctx = e.get("ctx") or {}
    if isinstance(ctx.get("error"), ConfigError):  # from a `_check`: names its settings itself
        return str(ctx["error"])
    kind = e["type"]
    domain = (ctx["domain"] if kind == "domain"
              else "a finite number" if kind == "finite_number"
              else "a mapping of settings" if kind.startswith("dataclass")
              else f"of type {_type_names(_hint_at(root, e['loc']))}" if kind.endswith("_type")
              else e["msg"])
    return f"{_dotted(prefix, e['loc']) or 'the config'} must be {domain}, got {e['input']!r}"


def _dotted(prefix: str, loc: tuple) -> str:
    path = prefix
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path


def _alternatives(hint: Any) -> tuple:
    """The types a (union) annotation admits, `list[int]` kept whole."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return tuple(t for a in typing.get_args(hint) for t in _alternatives(a))
    return (hint,)


def _hint_at(root: type, loc: tuple) -> Any:
    """The annotation of the setting at `loc` under class `root` (a list item's: its type)."""
    hint: Any = root
    for part in loc:
        options = _alternatives(hint)
        if isinstance(part, int):
            hint = next(typing.get_args(t)[0] for t in options if typing.get_origin(t) is list)
        else:
            cls = next(t for t in options if dataclasses.is_dataclass(t))
            hint = typing.get_type_hints(cls)[part]
    return hint


def _class_at(root: type, loc: tuple) -> type:
    return next(t for t in _alternatives(_hint_at(root, loc)) if dataclasses.is_dataclass(t))


def _type_names(hint: Any) -> str:
    return " or ".join("null" if t is type(None) else (typing.get_origin(t) or t).__name__
                       for t in _alternatives(hint))


