"""YAML with limits: a datafix file is parsed in bounded memory and time, whatever it holds.

PyYAML shares an anchored node between its aliases, so a "billion laughs" file (an alias of an
alias of … ten aliases each) composes in a few kilobytes, then explodes when anything walks it
(the position index, pydantic): a MemoryError traceback, or a hang. `BoundedLoader` counts the
nodes the document stands for *with every alias expanded* while composing, and refuses the file
past `MAX_NODES`; nesting deeper than `MAX_DEPTH` is refused too (Python's recursion limit
would otherwise end the parse with a traceback). `MAX_BYTES` bounds the file itself.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_NODES", "BoundedLoader", "load_bounded"]

MAX_BYTES = 1 << 20  # 1 MB: the largest demo datafix is about 20 kB
MAX_NODES = 100_000  # values once aliases are expanded: a large datafix has a few thousand
MAX_DEPTH = 100  # nesting levels: a datafix nests about 8


class BoundedLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` refusing a document above MAX_NODES expanded nodes or MAX_DEPTH
    levels, with a `yaml.MarkedYAMLError` pointing at where the limit was crossed."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.expanded = 0  # nodes composed so far, each alias counted as the nodes it repeats
        self.depth = 0
        self._sizes: dict[int, int] = {}  # id(node) → its expanded size

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            node = super().compose_node(parent, index)
            self._count(self._sizes.get(id(node), 1), event.start_mark, "aliases")
            return node
        event = self.peek_event()
        self.depth += 1
        if self.depth > MAX_DEPTH:
            problem = f"nested more than {MAX_DEPTH} levels deep (the hub's limit for a datafix)"
            raise yaml.MarkedYAMLError(problem=problem, problem_mark=event.start_mark)
        try:
            node = super().compose_node(parent, index)
        finally:
            self.depth -= 1
        size = 1
        if isinstance(node, yaml.SequenceNode):
            size += sum(self._sizes.get(id(item), 1) for item in node.value)
        elif isinstance(node, yaml.MappingNode):
            size += sum(
                self._sizes.get(id(key), 1) + self._sizes.get(id(value), 1)
                for key, value in node.value
            )
        self._sizes[id(node)] = size
        self._count(1, event.start_mark, "values")
        return node

    def _count(self, nodes: int, mark: Any, what: str) -> None:
        self.expanded += nodes
        if self.expanded > MAX_NODES:
            raise yaml.MarkedYAMLError(
                problem=f"the document stands for more than {MAX_NODES:,} values once its"
                f" {what} are expanded (the hub's limit for a datafix: a YAML alias bomb?)",
                problem_mark=mark,
            )


def load_bounded(text: str) -> tuple[yaml.Node | None, Any]:
    """The composed node tree (for positions) and the data of one YAML document, within the
    limits. Raises `yaml.YAMLError` (a `MarkedYAMLError` for a limit) like `yaml.safe_load`."""
    loader = BoundedLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
        return node, data
    finally:
        loader.dispose()
