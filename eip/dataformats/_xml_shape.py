"""Shape XML-derived dicts to a target type before ``msgspec.convert``.

XML is ambiguous where JSON is not: a list of one is a single element, an empty element
could be None, "" or [], values may sit in attributes (``@id``) and lists are often wrapped
(``<items><item/>..</items>``). :func:`compile_shaper` reads the target type once (through
``msgspec.inspect``) and returns a function that fixes just those points per message.
:func:`xpath` maps msgspec's error path back onto the XML document.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import msgspec.inspect as mi

__all__ = ["Shaper", "compile_shaper", "xpath"]

Shaper = Callable[[Any], Any]

_SEQUENCE_TYPES = (mi.ListType, mi.SetType, mi.FrozenSetType, mi.VarTupleType)
_FIELDED_TYPES = (mi.StructType, mi.DataclassType, mi.TypedDictType, mi.NamedTupleType)
_PATH_SEGMENT = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")


class Seq(list[Any]):
    """A list made from a wrapper element; ``tag`` keeps the child's name so an error path
    can say ``items/item[2]``."""

    tag: str | None = None


class Node(dict[str, Any]):
    """A dict whose ``attributes`` were renamed from ``@name`` to a field name."""

    attributes: frozenset[str] = frozenset()


def _leaf(value: Any) -> Any:
    # <name lang="en">Ann</name> arrives as {"@lang": "en", "#text": "Ann"}.
    if value.__class__ is dict and "#text" in value:
        return value["#text"]
    return value


def _str_leaf(value: Any) -> Any:
    # An empty element is the empty string when the field is a plain str.
    return "" if value is None else _leaf(value)


def compile_shaper(kind: mi.Type, memo: dict[int, Shaper | None] | None = None) -> Shaper:
    """Build the shaping function for ``kind`` (a ``msgspec.inspect`` type), once."""
    memo = {} if memo is None else memo
    if isinstance(kind, mi.UnionType):
        return _union(kind, memo)
    if isinstance(kind, _SEQUENCE_TYPES):
        return _sequence(kind.item_type, memo)
    if isinstance(kind, _FIELDED_TYPES):
        key = id(kind)
        if key in memo:  # a recursive type: bind late, the shaper is still being built
            return lambda value: memo[key](value)  # type: ignore[misc]
        memo[key] = None
        memo[key] = shaper = _fields(kind, memo)
        return shaper
    if isinstance(kind, mi.DictType | mi.FrozenDictType):
        inner = compile_shaper(kind.value_type, memo)
        return lambda value: (
            {k: inner(v) for k, v in value.items()} if value.__class__ is dict else value
        )
    if isinstance(kind, mi.StrType):
        return _str_leaf
    return _leaf


def _union(kind: mi.UnionType, memo: dict[int, Shaper | None]) -> Shaper:
    members = [t for t in kind.types if not isinstance(t, mi.NoneType)]
    inner = compile_shaper(members[0], memo) if len(members) == 1 else _leaf
    if len(members) == len(kind.types):
        return inner
    return lambda value: None if value is None else inner(value)


def _sequence(item: mi.Type, memo: dict[int, Shaper | None]) -> Shaper:
    inner = compile_shaper(item, memo)
    item_fields = (
        frozenset(f.encode_name for f in item.fields) if isinstance(item, _FIELDED_TYPES) else None
    )

    def is_wrapper(value: dict[str, Any]) -> bool:
        if len(value) != 1:
            return False
        key, content = next(iter(value.items()))
        if key[:1] in "@#":
            return False
        # {"item": [...]} is a wrapper; {"sku": "A"} is one item whose only child is a field.
        return isinstance(content, list) or item_fields is None or key not in item_fields

    def shape(value: Any) -> Any:
        seq = Seq()
        if value is None:
            return seq
        if value.__class__ is dict and is_wrapper(value):
            seq.tag, value = next(iter(value.items()))
            if value is None:
                return seq
        if value.__class__ is list:
            seq.extend(map(inner, value))
        else:
            seq.append(inner(value))
        return seq

    return shape


def _fields(kind: Any, memo: dict[int, Shaper | None]) -> Shaper:
    plan = [(f.encode_name, "@" + f.encode_name, compile_shaper(f.type, memo)) for f in kind.fields]

    def shape(value: Any) -> Any:
        if value is None:
            value = {}  # an empty element: let msgspec name the missing fields
        elif value.__class__ is not dict:
            return value
        node = Node(value)
        attributes = None
        for name, attribute, inner in plan:
            if name in node:
                node[name] = inner(node[name])
            elif attribute in node:
                node[name] = inner(node.pop(attribute))
                attributes = (attributes or set()) | {name}
        if attributes:
            node.attributes = frozenset(attributes)
        return node

    return shape


def xpath(root: str, path: str, value: Any) -> str:
    """Turn msgspec's ``$.items[2].sku`` into ``/order/items/item[3]/sku`` by walking the
    shaped data (error path only)."""
    parts = [root]
    for name, index in _PATH_SEGMENT.findall(path):
        if name:
            is_attribute = isinstance(value, Node) and name in value.attributes
            parts.append("@" + name if is_attribute else name)
            value = value.get(name) if isinstance(value, dict) else None
        elif index == "...":
            parts.append("*")
            value = None
        else:
            i = int(index)
            if isinstance(value, Seq) and value.tag is not None:
                parts.append(f"{value.tag}[{i + 1}]")
            else:
                parts[-1] += f"[{i + 1}]"
            value = value[i] if isinstance(value, list) and i < len(value) else None
    return "/" + "/".join(parts)
