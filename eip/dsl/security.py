"""DSL steps for field-level encryption: ``encrypt_fields`` and ``decrypt_fields``.

The key is a key ring (``id:key,...``, newest first, see :mod:`eip.security.keys`), usually a
placeholder: ``key="{{env:CRM_FIELD_KEYS}}"``. It is resolved and checked when the route
compiles, so a missing variable or a key of the wrong length fails ``eip check`` and the
start with an error naming the route and the step, never the key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

from eip.dsl.base import StepsBase
from eip.dsl.model import StepDef
from eip.errors import RouteDefinitionError
from eip.message import Exchange
from eip.processors.base import Step, with_inline

if TYPE_CHECKING:
    from eip.dsl.compiler import CompileContext
    from eip.security.keys import KeyRing

__all__ = ["FieldCryptoDef", "SecuritySteps"]


@dataclass(slots=True)
class FieldCryptoDef(StepDef):
    fields: list[str]
    key: Any  # str (maybe a placeholder), bytes or KeyRing
    decrypt: bool = False
    kind = "encrypt_fields"

    def describe(self) -> str:
        verb = "decrypt_fields" if self.decrypt else "encrypt_fields"
        return f"{verb}({', '.join(self.fields)})"


class SecuritySteps(StepsBase):
    def encrypt_fields(self, fields: Sequence[str], *, key: str | bytes | KeyRing) -> Self:
        """Encrypt these fields of the body (dotted paths, ``*`` for list items) with
        AES-256-GCM; each value becomes a token carrying its key id."""
        return self._add(FieldCryptoDef(list(_names(fields)), key))

    def decrypt_fields(self, fields: Sequence[str], *, key: str | bytes | KeyRing) -> Self:
        """Decrypt these fields (tokens of :meth:`encrypt_fields`) with any key of the ring."""
        return self._add(FieldCryptoDef(list(_names(fields)), key, decrypt=True))


def _names(fields: Sequence[str] | str) -> Sequence[str]:
    return [fields] if isinstance(fields, str) else fields


def _register() -> None:
    from eip.dsl.compiler import register_step
    from eip.security.fields import FieldCipher

    @register_step(FieldCryptoDef)
    def _compile_field_crypto(step: FieldCryptoDef, cc: CompileContext) -> Step:
        key = step.key
        if isinstance(key, str) and "{{" in key:
            properties = getattr(cc.context, "properties", None)
            if properties is None:
                raise cc.error("the key is a placeholder, but this context resolves none")
            key = properties.resolve(key).value
        if not isinstance(key, str | bytes) and type(key).__name__ != "KeyRing":
            raise cc.error(f"the key must be a key ring text, bytes or a KeyRing, got {key!r}")
        try:
            cipher = FieldCipher(step.fields, key)
        except RouteDefinitionError as exc:
            raise cc.error(exc.reason) from None
        apply = cipher.decrypt if step.decrypt else cipher.encrypt

        def crypt(exchange: Exchange) -> None:
            exchange.body = apply(exchange.body)

        inline = None if step.decrypt else cipher.inline()  # the fast path, with no call
        if inline is not None:
            return with_inline(crypt, inline[0], *inline[1])
        return with_inline(crypt, ["ex.body = {0}(ex.body)"], apply)


_register()
