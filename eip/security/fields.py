"""Field-level encryption of message bodies: dicts, msgspec Structs, dataclass-free objects.

Paths are dotted (``address.street``); ``*`` stands for every item of a list
(``contacts.*.phone``). A path that is missing, or whose value is None, is left as it is, so
optional fields need no special case. Containers along a path are copied, never changed in
place: another branch of a multicast, a wire tap or the original message kept for redelivery
still sees what it had.

Encrypting leaves a value that already is a token alone (a step that runs twice does not wrap
a token in a token). Decrypting is strict: a value that is not a token fails the exchange, as
a plaintext where a ciphertext belongs is a mistake somewhere upstream.
"""

from __future__ import annotations

import functools
import keyword
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from eip.errors import RouteDefinitionError
from eip.security import tokens
from eip.security.keys import KeyRing
from eip.security.tokens import PREFIX, TokenCipher, is_token

__all__ = ["FieldCipher"]

Path = tuple[str, ...]
_encode = msgspec.json.encode


def _split(path: str) -> Path:
    parts = tuple(path.split("."))
    if not path or not all(parts):
        raise RouteDefinitionError(f"invalid field path {path!r} (write 'a.b', 'items.*.c')")
    return parts


class FieldCipher:
    """Encrypts or decrypts the given fields of a body.

    ``encrypt(body)`` is a function made for these fields: for top-level fields (the common
    case) it is generated (:func:`_generated_encrypt`), so a Struct that has them all costs one
    call, one ``structs.replace`` and the cipher per value."""

    __slots__ = (
        "_cipher",
        "_complete",
        "_flat",
        "_opens",
        "_paths",
        "_seals",
        "_template",
        "encrypt",
    )

    encrypt: Callable[[Any], Any]

    def __init__(self, fields: Sequence[str], key: str | bytes | KeyRing) -> None:
        if isinstance(fields, str):
            fields = [fields]
        if not fields:
            raise RouteDefinitionError("name at least one field to encrypt or decrypt")
        self._paths = [(name, _split(name)) for name in fields]
        self._cipher = cipher = TokenCipher(KeyRing.of(key, "the key ring"))
        # One bound change per field, made once: nothing is built per message.
        self._seals = [(path, functools.partial(_seal, cipher, name)) for name, path in self._paths]
        self._opens = [(path, functools.partial(_open, cipher, name)) for name, path in self._paths]
        # Top-level fields only: one pass, one copy of the body for all of them, the associated
        # data made once. None when any path is nested or has a '*'.
        flat = all(len(path) == 1 and path[0] != "*" for _, path in self._paths)
        self._flat = (
            [(name, cipher.associated_data(name)) for name, _ in self._paths] if flat else None
        )
        # The Struct types seen to have every field, which the generated path takes.
        self._complete: set[type] = set()
        self.encrypt = self._encrypt_paths
        self._template: _Template | None = None
        if self._flat is not None:
            self.encrypt = self._encrypt_flat
            if all(name.isidentifier() and not keyword.iskeyword(name) for name, _ in self._flat):
                self._template = _Template(self._flat, cipher, self._complete, self._encrypt_flat)
                self.encrypt = _generated_encrypt(self._template)

    def inline(self) -> tuple[list[str], list[Any]] | None:
        """The fast path of :meth:`encrypt` as inline code for a fused route pipeline (the
        exchange is ``ex``; ``{0}``... stand for the values), or None when there is none."""
        if self._template is None:
            return None
        return ["_fe_b = ex.body", *self._template.lines("ex.body")], self._template.values

    def _encrypt_paths(self, body: Any) -> Any:
        for path, change in self._seals:
            body = _apply(body, path, change)
        return body

    def _encrypt_flat(self, body: Any) -> Any:
        """:meth:`encrypt` for top-level fields of a Struct or dict: the same result as the
        path walk (missing and None fields left alone, tokens not wrapped again, the body
        copied only when something changed), with one ``structs.replace`` for all fields.
        A Struct type with every field is remembered for the generated path."""
        fields = self._flat
        assert fields is not None
        if isinstance(body, msgspec.Struct):
            names: Any = body.__struct_fields__
            get: Callable[[str], Any] = functools.partial(getattr, body)
            if all(name in names for name, _ in fields):
                self._complete.add(type(body))
        elif isinstance(body, dict):
            names, get = body, body.get
        else:
            return body
        seal = self._cipher.seal_bound
        changes: dict[str, str] = {}
        for name, ad in fields:
            if name in names:
                value = get(name)
                if value is not None and not is_token(value):
                    changes[name] = seal(_encode(value), ad)
        if not changes:
            return body
        if isinstance(body, dict):
            return {**body, **changes}
        return msgspec.structs.replace(body, **changes)

    def decrypt(self, body: Any) -> Any:
        for path, change in self._opens:
            body = _apply(body, path, change)
        return body


# The generated fast path of FieldCipher.encrypt. The body is ``_fe_b``, and ``{out}`` is what
# gets the new body (the function's result, or the exchange's body when the route runs this
# inline); ``{0}``... are the values of :class:`_Template`. ``P <= v < Q`` is
# ``v.startswith(PREFIX)`` (Q is PREFIX with its last character's successor) without a call.
_HEAD = """\
if _fe_b.__class__ in {0}:
    _fe_c = False"""
_FIELD = """\
    _fe_v = _fe_b.{name}
    if _fe_v is None or (isinstance(_fe_v, str) and {{2}} <= _fe_v < {{3}}):
        _fe_t{i} = _fe_v
    else:
        _fe_n = next({{4}})
        _fe_s = {{6}}(_fe_n + {{7}}(_fe_n, {{8}}(_fe_v), {{{ad}}}))
        _fe_t{i} = {{5}} + _fe_s.translate({{9}}, {{10}}).decode()
        _fe_c = True"""
_END = """\
    if _fe_c:
        {{out}} = {{11}}(_fe_b, {args})
else:
    {{out}} = {{1}}(_fe_b)"""


class _Template:
    """The fast path's code (``{0}``-style placeholders) and the values they stand for."""

    def __init__(
        self,
        fields: list[tuple[str, bytes]],
        cipher: TokenCipher,
        complete: set[type],
        slow: Callable[[Any], Any],
    ) -> None:
        kit = cipher.seal_kit()
        names = list(dict.fromkeys(name for name, _ in fields))
        ads = dict(fields)
        self.values: list[Any] = [
            complete,
            slow,
            PREFIX,
            PREFIX[:-1] + chr(ord(PREFIX[-1]) + 1),
            kit.nonces,
            kit.header,
            tokens.b2a,
            kit.encrypt,
            _encode,
            tokens.URLSAFE,
            tokens.UNPADDED,
            msgspec.structs.replace,
            *(ads[name] for name in names),
        ]
        first_ad = 12
        args = ", ".join(f"{name}=_fe_t{i}" for i, name in enumerate(names))
        body = [_HEAD]
        body += [_FIELD.format(name=n, i=i, ad=first_ad + i) for i, n in enumerate(names)]
        body.append(_END.format(args=args))
        self.code = "\n".join(body)

    def lines(self, out: str) -> list[str]:
        """The code, giving the new body to ``out``."""
        return self.code.replace("{out}", out).split("\n")


def _generated_encrypt(template: _Template) -> Callable[[Any], Any]:
    """``encrypt`` as one generated function: a Struct of a type in ``complete`` (it has every
    field) is done inline, with the token made as :meth:`TokenCipher.seal_bound` makes it (the
    same nonces, encrypt and header); anything else goes to ``slow``. Field names are
    identifiers (checked by the caller), so the source holds nothing but them."""
    names = [f"v{n}" for n in range(len(template.values))]
    namespace: dict[str, Any] = dict(zip(names, template.values, strict=True))
    code = [line.format(*names) for line in template.lines("_fe_r")]
    source = ["def encrypt(_fe_b):", "    _fe_r = _fe_b", *("    " + c for c in code)]
    source.append("    return _fe_r")
    exec(compile("\n".join(source), "<eip encrypt_fields>", "exec"), namespace)
    encrypt: Callable[[Any], Any] = namespace["encrypt"]
    return encrypt


def _seal(cipher: TokenCipher, field: str, value: Any) -> Any:
    return value if is_token(value) else cipher.encrypt(value, field)


def _open(cipher: TokenCipher, field: str, value: Any) -> Any:
    return cipher.decrypt(value, field)


def _apply(node: Any, path: Path, change: Callable[[Any], Any]) -> Any:
    """``node`` with the value at ``path`` replaced by ``change(value)``; copies containers."""
    if node is None:
        return None
    head, rest = path[0], path[1:]
    if head == "*":
        if not isinstance(node, list | tuple):
            return node
        items = [_apply(item, rest, change) if rest else _leaf(item, change) for item in node]
        return type(node)(items) if isinstance(node, tuple) else items
    if isinstance(node, dict):
        if head not in node:
            return node
        value = node[head]
        new = _apply(value, rest, change) if rest else _leaf(value, change)
        if new is value:
            return node
        copy = dict(node)
        copy[head] = new
        return copy
    if isinstance(node, msgspec.Struct):
        if head not in node.__struct_fields__:
            return node
        value = getattr(node, head)
        new = _apply(value, rest, change) if rest else _leaf(value, change)
        return node if new is value else msgspec.structs.replace(node, **{head: new})
    return node


def _leaf(value: Any, change: Callable[[Any], Any]) -> Any:
    return None if value is None else change(value)
