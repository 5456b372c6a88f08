"""A route's fingerprint: what a reload compares to tell a changed route from an unchanged one.

A route model holds data (URIs, options, names) and code (predicates, transforms, strategies).
Data is compared by value. Code is compared by what it does, not by identity, since a reload
re-imports the modules and every function is a new object: a function's fingerprint is its
byte code, constants, names, defaults and closure values, and, for the globals it names that
are defined in the route files themselves (a helper function, a Struct type), theirs too. Line
numbers are left out, so editing one route does not mark the routes below it as changed.

A placeholder (``{{erp.url}}``) is fingerprinted by what it resolves to, so a reload that
changes the config restarts the routes that use the changed value. The digest is a hash;
resolved values (secrets among them) are never kept or shown.

When in doubt the walk says "changed": restarting a route that did not change costs a drain,
keeping one that did would ignore the user's edit.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import sys
import types
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from eip.dsl.model import RouteModel

__all__ = ["route_fingerprint"]

_DEPTH = 12
_BUDGET = 50_000  # objects walked per route; past it the route counts as changed
#: Runtime machinery reached through an object's attributes says nothing about what a route
#: does (a lock, a logger, a connection): its type is enough.
_OPAQUE = (
    "asyncio",
    "threading",
    "_thread",
    "logging",
    "sqlite3",
    "socket",
    "ssl",
    "concurrent",
    "selectors",
    "weakref",
    "_weakref",
    "queue",
    "opentelemetry",
)
_SKIPPED_FIELDS = frozenset({"defined_at"})  # where it is written, not what it does


def route_fingerprint(
    model: RouteModel,
    resolve: Callable[[str], str] | None = None,
    roots: Iterable[Path] = (),
) -> str:
    """A hex digest of what ``model`` does; ``resolve`` turns a text with placeholders into
    its resolved value; code defined under ``roots`` (the route files) is followed through
    the globals it uses."""
    walker = _Walker(resolve, tuple(Path(r).resolve() for r in roots))
    walker.add(model, 0)
    return walker.digest.hexdigest()


class _Walker:
    def __init__(self, resolve: Callable[[str], str] | None, roots: tuple[Path, ...]) -> None:
        self.digest = hashlib.sha256()
        self.resolve = resolve
        self.roots = roots
        self._seen: dict[int, int] = {}
        self._own_files: dict[str, bool] = {}

    def token(self, *parts: object) -> None:
        for part in parts:
            self.digest.update(str(part).encode("utf-8", "surrogatepass"))
            self.digest.update(b"\x00")

    def add(self, value: Any, depth: int) -> None:
        if depth > _DEPTH:
            self.token("deep", _type_name(value))
            return
        if value is None or isinstance(value, bool | int | float | complex | bytes):
            self.token(type(value).__name__, repr(value))
            return
        if isinstance(value, str):
            self._text(value)
            return
        if isinstance(value, enum.Enum):
            self.token("enum", _type_name(value), value.name)
            return
        key = id(value)
        if len(self._seen) > _BUDGET:
            self.token("over budget", key)  # an id: never equal across reloads
            return
        if key in self._seen:  # a cycle or a shared object: its position, not again
            self.token("seen", self._seen[key])
            return
        self._seen[key] = len(self._seen)
        self._compound(value, depth + 1)

    def _text(self, text: str) -> None:
        if "{{" in text and self.resolve is not None:
            try:
                resolved = self.resolve(text)
            except Exception as exc:  # validated before: an unresolvable text stays as written
                resolved = f"unresolved {type(exc).__name__}"
            self.token("str", text, hashlib.sha256(resolved.encode()).hexdigest())
        else:
            self.token("str", text)

    def _compound(self, value: Any, depth: int) -> None:
        if isinstance(value, list | tuple | set | frozenset):
            items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
            self.token(type(value).__name__, len(items))
            for item in items:
                self.add(item, depth)
        elif isinstance(value, dict):
            self.token("dict", len(value))
            for name, item in value.items():
                self.add(name, depth)
                self.add(item, depth)
        elif isinstance(value, types.FunctionType):
            self._function(value, depth)
        elif isinstance(value, types.MethodType):
            self.token("method")
            self.add(value.__func__, depth)
            self.add(value.__self__, depth)
        elif isinstance(value, types.CodeType):
            self._code(value, depth)
        elif isinstance(value, type):
            self._class(value, depth)
        elif isinstance(value, types.ModuleType | types.BuiltinFunctionType):
            self.token("named", getattr(value, "__qualname__", value.__name__))
        elif dataclasses.is_dataclass(value):
            self.token("dataclass", _type_name(value))
            for item in dataclasses.fields(value):
                if item.name not in _SKIPPED_FIELDS:
                    self.token(item.name)
                    self.add(getattr(value, item.name), depth)
        else:
            self._object(value, depth)

    def _function(self, function: types.FunctionType, depth: int) -> None:
        self.token("function", function.__module__, function.__qualname__)
        self._code(function.__code__, depth)
        self.add(function.__defaults__, depth)
        self.add(function.__kwdefaults__, depth)
        for cell in function.__closure__ or ():
            try:
                self.add(cell.cell_contents, depth)
            except ValueError:  # an empty cell
                self.token("empty cell")
        if not self._own(function.__code__.co_filename):
            return
        scope = function.__globals__
        for name in _global_names(function.__code__):
            if name in scope:
                found = scope[name]
                if isinstance(found, types.FunctionType | type) or not callable(found):
                    self.token("global", name)
                    self.add(found, depth)

    def _code(self, code: types.CodeType, depth: int) -> None:
        self.token("code", code.co_name, code.co_code.hex(), code.co_names, code.co_varnames)
        self.token(code.co_argcount, code.co_kwonlyargcount, code.co_flags)
        for const in code.co_consts:
            self.add(const, depth)

    def _class(self, cls: type, depth: int) -> None:
        self.token("class", cls.__module__, cls.__qualname__)
        module_file = getattr(sys.modules.get(cls.__module__), "__file__", None)
        if not module_file or not self._own(module_file):
            return  # a library type: its name says what it is
        for base in cls.__bases__:
            self.token("base", _type_name_of(base))
        for name, member in sorted(vars(cls).items()):
            if name.startswith("__") and name not in ("__init__", "__call__", "__annotations__"):
                continue
            self.token("member", name)
            self.add(member, depth)

    def _object(self, value: Any, depth: int) -> None:
        self.token("object", _type_name(value))
        if type(value).__module__.split(".")[0] in _OPAQUE:
            return
        self._class(type(value), depth)
        fields = getattr(value, "__struct_fields__", None)  # msgspec Structs (endpoint specs)
        if fields is None:
            fields = tuple(getattr(value, "__dict__", {}))
            slots = [s for c in type(value).__mro__ for s in getattr(c, "__slots__", ()) or ()]
            fields += tuple(s for s in slots if isinstance(s, str) and s not in fields)
        for name in fields:
            if name.startswith("__"):
                continue
            try:
                item = getattr(value, name)
            except AttributeError:
                continue
            self.token("attr", name)
            self.add(item, depth)

    def _own(self, filename: str) -> bool:
        known = self._own_files.get(filename)
        if known is None:
            path = Path(filename).resolve()
            known = any(path == root or root in path.parents for root in self.roots)
            self._own_files[filename] = known
        return known


def _global_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _type_name(value: object) -> str:
    return _type_name_of(type(value))


def _type_name_of(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
