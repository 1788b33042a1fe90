"""One way for a config dataclass to become JSON and back (peft's `PeftConfigMixin` is the model).

A run records its config as `to_dict()` JSON in DuckDB and rebuilds it with `from_dict`, so both must
agree for every config: nested configs become dicts, tuples and frozensets become lists, and `from_dict`
turns them back by the field's type. Unknown keys raise `InputError` naming them (a typo in a grid file
or a config from another version must not pass silently); missing keys take the field's default, so a
run recorded before a field existed still loads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from typing import Any, ClassVar, TypeVar

from .errors import InputError

C = TypeVar("C", bound="ConfigMixin")


def _plain(value: Any) -> Any:
    """A field's value in JSON types (sets sorted, so the JSON of a config never depends on hash order)."""
    if isinstance(value, ConfigMixin):
        return value.to_dict()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _typed(hint: Any, value: Any) -> Any:
    """A JSON value turned back into the field's type: a nested config, a tuple or a frozenset."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        kinds = [h for h in typing.get_args(hint) if h is not type(None)]
        return _typed(kinds[0], value) if len(kinds) == 1 else value
    if isinstance(hint, type) and issubclass(hint, ConfigMixin) and isinstance(value, dict):
        return hint.from_dict(value)
    if origin is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(hint)  # tuple[X, ...]: each element as X
        return tuple(_typed(args[0], v) for v in value) if args[-1:] == (Ellipsis,) else tuple(value)
    if origin is frozenset and isinstance(value, (list, tuple, set, frozenset)):
        return frozenset(value)
    return value


class ConfigMixin:
    """`to_dict`/`from_dict` for a (frozen) config dataclass, so every config records and reloads alike.

    `config_label` names the config in error messages (default: the class name). `recorded_when_set` names
    fields added after runs were recorded: they enter `to_dict` only when they differ from their default, so the
    JSON, and every cache key built from it, of a config that leaves them alone stays what it was.
    """

    config_label: ClassVar[str] = ""
    recorded_when_set: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict:
        """Every field in JSON types, nested configs as dicts: what a run records in DuckDB."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)  # type: ignore[arg-type]
                if f.name not in self.recorded_when_set or getattr(self, f.name) != f.default}

    @classmethod
    def from_dict(cls: type[C], data: Any) -> C:
        """The config a `to_dict` wrote (missing keys take their defaults; unknown keys raise `InputError`)."""
        label = cls.config_label or cls.__name__
        if not isinstance(data, dict):
            raise InputError(f"{label} must be a JSON object, not {type(data).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise InputError(f"unknown {label} keys {', '.join(map(str, unknown))}; use {', '.join(names)}")
        hints = typing.get_type_hints(cls)
        return cls(**{k: _typed(hints[k], v) for k, v in data.items()})


def fingerprint(obj: Any) -> str:
    """16 hex digits of the sha256 of `obj`'s sorted JSON: the cache key of anything built from configs."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]
