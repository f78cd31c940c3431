"""Reading a recipe: the YAML file, ``--set key.path=value`` items and command-line flags merged in one place.

Errors name the file, the YAML line and the dotted key; an unknown key gets a "did you mean". The
sections and their defaults are the config model in ``inspect_core.config``; this module only loads.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from inspect_core.config import InspectConfig
from inspect_core.config.safe_yaml import KeyLines, read_yaml_file, safe_yaml_load
from inspect_core.errors import UsageError


class ConfigError(UsageError):
    """A recipe that does not validate; the message lists every bad key with its line."""


def _read(path: Path) -> tuple[dict[str, Any], KeyLines]:
    """The recipe's mapping and the line of every key in it, through the one safe YAML reader."""
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, not a recipe file")
    data, lines = read_yaml_file(path, error=ConfigError)
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping of sections, got {type(data).__name__}")
    return data, lines


def _origin(loc: tuple[Any, ...], where: dict[tuple[Any, ...], str]) -> str:
    """Where the value at ``loc`` came from: the closest enclosing key given, else a key given below it (a section-level
    check failing on a ``--set`` item), else the file. Keys compare as text: YAML's ``1:`` is the int 1 to pydantic."""
    given = {tuple(str(p) for p in key): origin for key, origin in where.items()}
    path = tuple(str(p) for p in loc)
    for n in range(len(path), 0, -1):
        if path[:n] in given:
            return given[path[:n]]
    below = [origin for key, origin in given.items() if len(key) > len(path) and key[: len(path)] == path]
    return below[-1] if below else given.get((), "")


def _shown(text: str) -> str:
    """``text`` for a message: as it is, or quoted with escapes if it holds characters a terminal would swallow (\\r, \\x1b)."""
    return text if text.isprintable() else repr(text)


def _validate(data: dict[str, Any], where: dict[tuple[str | int, ...], str]) -> InspectConfig:
    """Validate the merged mapping; each error names where its key came from (file and line, --set, or a flag)."""
    try:
        return InspectConfig.model_validate(data)
    except ValidationError as exc:
        found = [(_key_path(error["loc"]), error) for error in exc.errors()]
        # A union field fails once per member (class_map: a mapping, or text): keep the deepest, which names the item.
        found = [(loc, e) for loc, e in found if not any(len(other) > len(loc) and other[: len(loc)] == loc for other, _ in found)]
        reasons: dict[str, list[str]] = {}  # one line per key: a union's members' reasons joined ("a dictionary or a string")
        for loc, error in found:
            key = ".".join(str(p) for p in loc) or "(top level)"
            reason = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
            said = reasons.setdefault(f"{_origin(loc, where)}{key}", [])
            if reason not in said:
                said.append(reason.removeprefix("Input should be ") if said else reason)
        raise ConfigError("\n".join(f"{where_key}: {' or '.join(said)}" for where_key, said in reasons.items())) from None


def _key_path(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """An error's location as recipe keys, without the tags pydantic adds for validators (``function-after[...]``) and
    for the member of a union field that failed (``dataset.class_map`` is a mapping or text: ``dict[...]``, ``str``),
    which name no key a person wrote. Tags are told from keys by walking the config model along the location."""
    kept: list[Any] = []
    current: Any = InspectConfig
    union_next = False
    for part in loc:
        if isinstance(part, str) and part.startswith("function-"):
            continue
        if union_next:  # the member tag right after a union field
            union_next = False
            current = None
            continue
        kept.append(part)
        field = current.model_fields.get(str(part)) if isinstance(current, type) and issubclass(current, BaseModel) else None
        if field is None:
            current = None
            continue
        current = _section_type(field.annotation)
        members = [m for m in get_args(field.annotation) if m is not type(None)]
        union_next = get_origin(field.annotation) in (Union, UnionType) and len(members) > 1  # X | None carries no tag
    return tuple(kept)


def load_config(path: Path | str) -> InspectConfig:
    """Read and validate a YAML recipe."""
    return load_recipe(path)


def _field_keys(model: type[BaseModel], dotted: str) -> tuple[list[str], bool]:
    """The settable keys below ``dotted`` (``lora``, ``score.class_thresholds``) and whether any key is allowed there."""
    current: Any = model
    for part in [p for p in dotted.split(".") if p]:
        field = current.model_fields[part] if isinstance(current, type) and issubclass(current, BaseModel) else None
        current = _section_type(field.annotation) if field else None
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields), False
    return [], True  # a free mapping (class_thresholds), a list or a scalar: not ours to check further


def _section_type(annotation: Any) -> Any:
    """The Section class inside ``X``, ``X | None``; anything else as it is."""
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return annotation


def _check_key(key: str, origin: str) -> list[str]:
    """``key`` split into parts, or a ConfigError naming it and the closest real key ("did you mean")."""
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise ConfigError(f"{origin}{key!r}: not a dotted key such as train.lr")
    for depth, part in enumerate(parts):
        known, free = _field_keys(InspectConfig, ".".join(parts[:depth]))
        if free:
            break
        if part not in known:
            prefix = ".".join(parts[:depth])
            close = difflib.get_close_matches(part, known, n=1)
            hint = f"; did you mean {'.'.join(filter(None, [prefix, close[0]]))}?" if close else f"; known: {', '.join(known)}"
            raise ConfigError(f"{origin}{_shown(key)}: unknown key{hint}")
    return parts


def _put(data: dict[str, Any], parts: list[str], value: Any, key: str, origin: str) -> None:
    for part in parts[:-1]:
        child = data.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{origin}{_shown(key)}: {_shown(part)} is not a section")
        data = child
    data[parts[-1]] = value


def parse_set(item: str) -> tuple[str, Any]:
    """``key.path=value`` -> (key, value), the value read as a YAML scalar or flow collection (8 -> int, null -> None, [a, b])."""
    key, sep, text = item.partition("=")
    if not sep:
        raise ConfigError(f"--set {_shown(item)}: expected key.path=value, e.g. --set train.lr=2e-4")
    return key.strip(), safe_yaml_load(text, f"--set {_shown(item)}", error=ConfigError) if text.strip() else ""


def load_recipe(path: Path | str | None = None, sets: Sequence[str] = (), overrides: Mapping[str, Any] | None = None) -> InspectConfig:
    """The one merge behind every entry point: recipe file (or the defaults), then ``--set key.path=value``
    items, then ``overrides`` (dotted keys from command-line flags or flow parameters), validated once.

    Unknown keys fail with the closest known one; bad values name the file and line, the ``--set``
    item, or the flag they came from.
    """
    data: dict[str, Any] = {}
    where: dict[tuple[str | int, ...], str] = {}
    if path is not None:
        data, lines = _read(Path(path))
        where = {loc: f"{path}: line {line}: " for loc, line in lines.items()} | {(): f"{path}: "}
    layers = [(f"--set {_shown(item)}: ", *parse_set(item)) for item in sets]
    layers += [("override: ", key, value) for key, value in (overrides or {}).items()]
    for origin, key, value in layers:
        parts = _check_key(key, origin)
        _put(data, parts, value, key, origin)
        where = {loc: w for loc, w in where.items() if loc[: len(parts)] != tuple(parts)} | {tuple(parts): origin}
    return _validate(data, where)
