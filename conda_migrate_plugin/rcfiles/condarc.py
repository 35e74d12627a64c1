"""A condarc's directory lists (``envs_dirs``, ``pkgs_dirs``) rewritten in
the file's own text, so that every comment, anchor, quote style and line
end stays."""

from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING, Any

from ruamel.yaml import YAML
from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

from .rewrite import Unsafe

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ruamel.yaml.nodes import Node

    #: ``Rewriter.relocate``: the new spelling of each entry, None to drop it.
    Relocate = Callable[[Sequence[str], str], list[str | None]]

#: condarc keys (and conda's alias ``envs_path``) with the destination their entries take.
_CONDARC_KEYS = {"envs_dirs": "envs", "envs_path": "envs", "pkgs_dirs": "pkgs"}


def rewrite_condarc(data: bytes, relocate: Relocate) -> bytes:
    """Splice new entries into the text that ruamel.yaml located.

    ruamel's round-trip dumper re-indents the whole document to one style, so the
    parser only locates the scalars; everything around them is kept byte for byte,
    and the result is loaded again to prove that only the planned entries changed.
    """
    text = data.decode("utf-8")
    root = YAML(typ="rt").compose(text)
    if not isinstance(root, MappingNode):
        return data
    document = _settings(text)
    uses = _node_uses(root)
    splices: list[tuple[int, int, str]] = []
    planned: dict[str, list[object]] = {}
    for key, value in root.value:
        kind = _CONDARC_KEYS.get(key.value) if isinstance(key, ScalarNode) else None
        if kind is None or not isinstance(value, SequenceNode):
            continue
        entries = _entries(value)
        relocated = relocate(entries, kind)
        for position, (item, old, new) in enumerate(
            zip(value.value, entries, relocated)
        ):
            if new == old:
                continue
            if uses[id(value)] > 1 or uses[id(item)] > 1:
                raise Unsafe(f"{key.value} entry {old} is shared through a YAML alias")
            if new is None:
                splices.append(_removal(text, value, position))
            else:
                splices.append(_replacement(text, item, new))
        planned[key.value] = [
            loaded if new == old else new
            for loaded, old, new in zip(document[key.value], entries, relocated)
            if new is not None
        ]
    if not splices:
        return data
    for start, end, replacement in sorted(splices, reverse=True):
        text = text[:start] + replacement + text[end:]
    document.update(planned)
    if _settings(text) != document:
        raise Unsafe("cannot be edited without changing other settings")
    return text.encode("utf-8")


def cache_entries(data: bytes) -> list[tuple[int, str]]:
    """Each ``pkgs_dirs`` entry, with its line: what the run says it moved
    or could not."""
    root = YAML(typ="rt").compose(data.decode("utf-8"))
    if not isinstance(root, MappingNode):
        return []
    return [
        (item.start_mark.line + 1, item.value)
        for key, value in root.value
        if isinstance(key, ScalarNode) and _CONDARC_KEYS.get(key.value) == "pkgs"
        if isinstance(value, SequenceNode)
        for item in value.value
        if isinstance(item, ScalarNode)
    ]


def _node_uses(root: Node) -> Counter[int]:
    """How often each node is reached; more than once means it sits behind an alias."""
    uses: Counter[int] = Counter()
    pending = [root]
    while pending:
        node = pending.pop()
        uses[id(node)] += 1
        if uses[id(node)] > 1:
            continue
        if isinstance(node, MappingNode):
            pending.extend(part for pair in node.value for part in pair)
        elif isinstance(node, SequenceNode):
            pending.extend(node.value)
    return uses


def _settings(text: str) -> Any:
    """The plain data a reader sees: round-trip loading would keep tags and styles."""
    return YAML(typ="safe", pure=True).load(text)


def _entries(sequence: SequenceNode) -> list[str]:
    """The scalar entries; "" stands for a nested node, which never names a path."""
    return [i.value if isinstance(i, ScalarNode) else "" for i in sequence.value]


def _replacement(text: str, item: ScalarNode, new: str) -> tuple[int, int, str]:
    if item.style in ("|", ">"):
        raise Unsafe(f"entry {item.value} is a block scalar")
    start, end = item.start_mark.index, item.end_mark.index
    # The node's span starts at its anchor or tag, which stay.
    properties = re.match(r"(?:[&!]\S*\s+)*", text[start:end])
    skip = properties.end() if properties else 0  # the pattern matches even ""
    return start + skip, end, _yaml_scalar(new, item.style)


def _removal(text: str, sequence: SequenceNode, position: int) -> tuple[int, int, str]:
    """The span to delete for an entry: never the first, which relocation always keeps.

    A block entry takes its line along, but not the comment after it, which
    stays on a line of its own: the user's words are theirs. Were anything else
    on that line, the check after splicing would notice it gone.
    """
    items = sequence.value
    if sequence.flow_style:
        return items[position - 1].end_mark.index, items[position].end_mark.index, ""
    start, end = items[position].start_mark.index, items[position].end_mark.index
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line_end = len(text) if line_end == -1 else line_end + 1
    comment = re.match(r"[ \t]*(#.*)", text[end:line_end], re.DOTALL)
    if comment is None:
        return line_start, line_end, ""
    before = text[line_start:start]
    indent = before[: len(before) - len(before.lstrip(" \t"))]
    return line_start, line_end, indent + comment[1]


def _yaml_scalar(value: str, style: str | None) -> str:
    if style == '"':
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if style != "'" and re.fullmatch(r"[\w/.~${}+@%-]+", value):
        return value
    return "'" + value.replace("'", "''") + "'"
