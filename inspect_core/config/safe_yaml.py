"""The one YAML reader behind every YAML the tool reads: recipes, ``--set`` values, YOLO ``data.yaml``.

Why not plain ``yaml.safe_load``: it refuses arbitrary Python objects but nothing else. A few lines of
nested anchors ("billion laughs") describe 10^9 nodes; PyYAML shares aliased nodes, so the load itself
returns, but everything downstream that walks the data (validation, ``config show``, the key-line
lookup for messages) expands them and hangs while memory grows. A duplicate key silently wins, so
a recipe can say ``lr`` twice and run with the one nobody reads. A bad byte or a too-deep nesting
ends in a traceback naming no file. So this reader, before anything walks the data:

- refuses input over ``max_bytes`` before parsing, and decodes UTF-8 itself to name a bad byte's offset;
- counts alias uses while composing (``max_aliases``) and refuses nesting deeper than ``max_depth``;
- measures the *expanded* document, each alias counted as the whole subtree it stands for, and
  refuses over ``max_nodes`` or a recursive alias;
- refuses a duplicate mapping key, naming both lines.

Every refusal is ``error`` (a :class:`~inspect_core.errors.UsageError` by default, exit 2; an importer
passes its own data error) with a message that starts with the file's name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from inspect_core.errors import UsageError

MAX_BYTES = 1 << 20  # a recipe is a few hundred bytes; a YOLO data.yaml with thousands of names is still far below
MAX_ALIASES = 1000
MAX_NODES = 100_000
MAX_DEPTH = 64

KeyLines = dict[tuple[Any, ...], int]


class _Refused(Exception):
    """A limit was hit while composing; turned into ``error`` with the file's name by the caller."""


class _LimitedLoader(yaml.SafeLoader):
    """SafeLoader that counts aliases and nesting while it composes, so a runaway document stops early."""

    def __init__(self, stream: str, max_aliases: int, max_depth: int) -> None:
        super().__init__(stream)
        self.max_aliases, self.max_depth = max_aliases, max_depth
        self.aliases, self.depth = 0, 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > self.max_aliases:
                raise _Refused(f"line {event.start_mark.line + 1}: more than {self.max_aliases} aliases (*name)")
        self.depth += 1
        try:
            if self.depth > self.max_depth:
                raise _Refused(f"line {event.start_mark.line + 1}: nested deeper than {self.max_depth} levels")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_expanded_size(root: yaml.Node, max_nodes: int) -> None:
    """Nodes the document stands for once every alias is expanded, counted without expanding (each shared node sized once)."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        if finished:
            on_path.discard(id(node))
            sizes[id(node)] = size = 1 + sum(sizes[id(child)] for child in _children(node))
            if size > max_nodes:
                raise _Refused(f"line {node.start_mark.line + 1}: expands to more than {max_nodes} nodes (nested aliases?)")
            continue
        if id(node) in sizes:
            continue
        on_path.add(id(node))
        stack.append((node, True))
        for child in _children(node):
            if id(child) in on_path:
                raise _Refused(f"line {child.start_mark.line + 1}: a recursive alias (an anchor used inside itself)")
            if id(child) not in sizes:
                stack.append((child, False))


def _key_id(key: yaml.Node) -> tuple[str, Any] | None:
    return (key.tag, key.value) if isinstance(key, yaml.ScalarNode) else None


def _check_duplicates_and_lines(root: yaml.Node) -> KeyLines:
    """Refuse a key given twice in one mapping; return dotted key path -> 1-based line (for messages)."""
    lines: KeyLines = {}
    stack: list[tuple[yaml.Node, tuple[Any, ...]]] = [(root, ())]
    while stack:
        node, prefix = stack.pop()
        if isinstance(node, yaml.MappingNode):
            seen: dict[tuple[str, Any], int] = {}
            for key, value in node.value:
                if key.tag == "tag:yaml.org,2002:merge":  # ``<<: *base``: later keys override merged ones by design
                    continue
                ident, line = _key_id(key), key.start_mark.line + 1
                if ident is not None and ident in seen:
                    where = ".".join(str(p) for p in (*prefix, key.value))
                    raise _Refused(f"line {line}: duplicate key {where!r} (first given at line {seen[ident]})")
                if ident is not None:
                    seen[ident] = line
                    lines[(*prefix, key.value)] = line
                    stack.append((value, (*prefix, key.value)))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                lines[(*prefix, index)] = item.start_mark.line + 1
                stack.append((item, (*prefix, index)))
    return lines


def decode_utf8(raw: bytes, where: str | Path, error: type[Exception] = UsageError) -> str:
    """``raw`` as text (a UTF-8 byte-order mark allowed), or ``error`` naming the file, the bad byte, its offset and line."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise error(f"{where}: not UTF-8 text: byte 0x{raw[exc.start]:02x} at byte position {exc.start} (line {line}); "
                    "save the file as UTF-8") from None  # fmt: skip


def safe_yaml_load_with_lines(
    text: str | bytes, path: str | Path, *, error: type[Exception] = UsageError, max_bytes: int = MAX_BYTES,
    max_aliases: int = MAX_ALIASES, max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH,
) -> tuple[Any, KeyLines]:  # fmt: skip
    """The document in ``text`` (read from ``path``, which messages name) and the line of every key in it.

    An empty document is None. Every refusal (size, encoding, aliases, depth, expansion, duplicate keys,
    malformed YAML, a value PyYAML cannot build) raises ``error`` with a message starting ``{path}: ``.
    """
    size = len(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
    if size > max_bytes:
        raise error(f"{path}: larger than {max_bytes} bytes, the most a YAML file here may have")
    if isinstance(text, bytes):
        text = decode_utf8(text, path, error)
    try:
        loader = _LimitedLoader(text, max_aliases, max_depth)  # the reader checks every character here
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise error(f"{path}: line {line}: character {exc.character:#06x} at position {exc.position} is not allowed in YAML") from None
    loader.name = str(path)  # marks (and so PyYAML's own messages) name the file
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        _check_expanded_size(node, max_nodes)
        lines = _check_duplicates_and_lines(node)
        return loader.construct_document(node), lines
    except _Refused as refused:
        raise error(f"{path}: {refused}") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: malformed YAML: {exc}") from None
    except RecursionError:
        raise error(f"{path}: YAML nested too deeply") from None
    except (ValueError, OverflowError, TypeError) as exc:  # a scalar PyYAML resolves but cannot build: 2023-13-45, a 5000-digit int
        raise error(f"{path}: a value cannot be read: {exc}") from None
    finally:
        loader.dispose()


def safe_yaml_load(text: str | bytes, path: str | Path, **limits: Any) -> Any:
    """The document in ``text`` (see :func:`safe_yaml_load_with_lines`; ``error=`` and the limits as keywords)."""
    return safe_yaml_load_with_lines(text, path, **limits)[0]


def read_yaml_file(path: Path, **limits: Any) -> tuple[Any, KeyLines]:
    """Read ``path`` (no more than the byte limit, so a huge file is not read whole) and load it safely, with key lines."""
    error = limits.get("error", UsageError)
    max_bytes = limits.get("max_bytes", MAX_BYTES)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(max_bytes + 1)
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or exc}") from None
    return safe_yaml_load_with_lines(raw, path, **limits)
