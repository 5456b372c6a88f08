"""``eip check``: what ``eip run`` would find wrong, found without connecting anywhere.

:func:`check_routes` compiles every route of a context (each on its own, so one bad route does
not hide the others), then walks the route models:

- a ``direct:`` or ``seda:`` endpoint that a route sends to (``to``, a dead letter channel, a
  wire tap, an enricher, a recipient list of constant URIs, a ``to_d`` without placeholders,
  an aggregator's dead letter) but no route consumes is an **error**: each message sent there
  would fail with ``NoConsumerError`` (``direct:``) or wait in memory forever (``seda:``);
- a route consuming ``direct:``/``seda:`` that no route sends to is a **warning**: a
  ``ProducerTemplate``, an HTTP handler or a computed recipient may feed it;
- a property placeholder (``{{erp.url}}``, ``{{env:ERP_TOKEN}}``, ``{{file:...}}``) that has no
  value is an **error**, naming the route, the step, the endpoint (as written) and the
  placeholder, each one (the compiler stops at a route's first);
- a route whose source is acknowledged on completion (RabbitMQ, file, HTTP in-only, durable
  seda) that sends to a memory-only ``seda:`` queue without ``wait_for_completion=true`` is a
  **warning**: a crash loses what the queue holds (:mod:`eip.runtime.memory_hops`);
- an endpoint option that names an environment variable (``credentials_env``,
  ``secret_env``, ``ws_password_env``, any ``*_env``) where the variable is not set is an
  **error**, naming the route, the step, the option and the variable (``run`` would fail when
  the endpoint starts).

Typed-spec mistakes fail earlier, while the routes are built, with the same message as URI
mistakes (:mod:`eip.components.typed`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from eip.components.base import Component, EndpointSpec
from eip.dsl.compiler import compile_route
from eip.dsl.model import RouteModel, endpoint_text
from eip.errors import RouteDefinitionError, redact_uri
from eip.runtime.memory_hops import memory_hops
from eip.runtime.model_walk import (
    EndpointUse,
    dynamic_prefixes,
    endpoint_uses,
    internal_key,
    resolve_ref,
)

if TYPE_CHECKING:
    from eip.runtime.context import Context

__all__ = ["Finding", "check_routes"]

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem ``eip check`` reports, as one line."""

    severity: Severity
    message: str
    route_id: str | None = None

    def __str__(self) -> str:
        return f"{self.severity}: {self.message}"


def check_routes(context: Context, *, complete: bool = True) -> list[Finding]:
    """Every problem of the context's routes that ``run`` would meet; errors first.

    ``complete=False`` says some routes could not be built: who consumes what is then not
    known, so ``direct:``/``seda:`` endpoints are not judged."""
    findings = _compile(context)
    failed = {f.route_id: f.message for f in findings}
    uses = [use for model in context.route_models for use in endpoint_uses(model)]
    resolved = [(use, resolve_ref(context, use.ref)) for use in uses]
    if complete:
        findings += _internal_endpoints(context, resolved)
    findings += _placeholders(context, uses)
    findings += [Finding("warning", h.message, h.route_id) for h in memory_hops(context, resolved)]
    for finding, variable in _environment(context, resolved):
        # The compiler may have met the same variable first (``secret_env`` of a client).
        if f"'{variable}'" not in failed.get(finding.route_id, ""):
            findings.append(finding)
    errors = [f for f in findings if f.severity == "error"]
    return _unique(errors) + _unique([f for f in findings if f.severity == "warning"])


def _compile(context: Context) -> list[Finding]:
    findings = []
    for model in context.route_models:
        try:
            compile_route(context, model)
        except RouteDefinitionError as exc:
            findings.append(Finding("error", str(exc), model.route_id))
    if not findings:
        try:
            context.validate()  # rules across routes: one consumer per direct: name
        except RouteDefinitionError as exc:
            _locate(exc, context)
            findings.append(Finding("error", str(exc), exc.route_id))
    return findings


def _locate(exc: RouteDefinitionError, context: Context) -> None:
    if exc.location is None:
        model = next((m for m in context.route_models if m.route_id == exc.route_id), None)
        exc.location = model.defined_at if model is not None else None


# -- direct: and seda: ---------------------------------------------------------------------
_CONSEQUENCE = {
    "direct": "each message sent there would fail with NoConsumerError",
    "seda": "messages sent there would wait in its queue and never be processed",
}


def _internal_endpoints(
    context: Context, resolved: list[tuple[EndpointUse, tuple[Component, EndpointSpec] | None]]
) -> list[Finding]:
    consumers: dict[str, list[RouteModel]] = {}
    senders: dict[str, list[EndpointUse]] = {}
    for use, found in resolved:
        key = internal_key(found)
        if key is not None:
            if use.consumes:
                consumers.setdefault(key, []).append(use.model)
            else:
                senders.setdefault(key, []).append(use)
    findings: list[Finding] = []
    reported: set[tuple[int, str]] = set()
    for key, uses in senders.items():
        routes = consumers.get(key)
        for use in uses:
            if use.shared is not None:  # builder-wide handling: once, not once per route
                if (id(use.shared), key) in reported:
                    continue
                reported.add((id(use.shared), key))
            if not routes:
                why = _CONSEQUENCE.get(key.partition(":")[0], "nothing would receive it")
                text = f"sends to {key}, which no route consumes: {why}"
                findings.append(_finding("error", text, use.model, use.step))
            elif not any(m.auto_startup for m in routes):
                names = ", ".join(f"'{m.route_id}'" for m in routes)
                text = (
                    f"sends to {key}, whose route {names} does not start with the others "
                    "(auto_startup=False): start it before messages come"
                )
                findings.append(_finding("warning", text, use.model, use.step))
    prefixes = dynamic_prefixes(context.route_models)
    for key, models in consumers.items():
        if key in senders or any(p and key.startswith(p) for p in prefixes):
            continue
        for model in models:
            text = (
                f"consumes {key}, but no route sends to it (fine when a ProducerTemplate, "
                "an HTTP handler or a computed recipient feeds it)"
            )
            findings.append(_finding("warning", text, model, "from"))
    return findings


# -- placeholders --------------------------------------------------------------------------
def _placeholders(context: Context, uses: list[EndpointUse]) -> list[Finding]:
    """Each placeholder without a value, of every endpoint (the compiler stops at a route's
    first), worded as ``run`` words it."""
    findings: list[Finding] = []
    for use in uses:
        for problem in context.properties.problems(use.ref):
            text = f"endpoint {endpoint_text(use.ref)}: {problem}"
            findings.append(_finding("error", text, use.model, use.step))
    return findings


# -- environment variables -----------------------------------------------------------------
def _needed(spec: Any, option: str) -> bool:
    """Whether the endpoint reads the variable ``option`` names, as it is configured."""
    if option == "ws_password_env":  # WS-Security: only with a user name
        return bool(getattr(spec, "ws_username", ""))
    if option == "secret_env":  # an HTTP client: only when it authenticates
        return getattr(spec, "auth", "none") != "none"
    if option == "credentials_env":  # served: "" inherits the server's, "none" is public
        return getattr(spec, "auth", getattr(spec, "scheme", "")) not in ("", "none")
    return True


def _missing(spec: Any) -> Iterator[tuple[str, str, str]]:
    """(option, variable, what is wrong) for each variable the spec needs that is unusable."""
    for option in getattr(type(spec), "__struct_fields__", ()):
        variable = getattr(spec, option, None)
        if not option.endswith("_env") or not isinstance(variable, str) or not variable:
            continue
        if not _needed(spec, option):
            continue
        value = os.environ.get(variable)
        if value is None:
            yield option, variable, "is not set"
        elif option == "credentials_env" and not value.strip():
            yield option, variable, "is empty"


def _environment(
    context: Context, resolved: list[tuple[EndpointUse, tuple[Component, EndpointSpec] | None]]
) -> list[tuple[Finding, str]]:
    """Each unusable variable as a finding, with the variable's name."""
    findings: list[tuple[Finding, str]] = []
    for use, found in resolved:
        if found is None:
            continue
        spec = found[1]
        for option, variable, wrong in _missing(spec):
            # As written when it holds placeholders: never what they resolved to.
            shown = endpoint_text(use.ref)
            shown = shown if "{{" in shown else redact_uri(spec.uri)
            text = f"{option} '{variable}' {wrong}: set the environment variable (endpoint {shown})"
            findings.append((_finding("error", text, use.model, use.step), variable))
    for component in context.components():  # the HTTP servers' own authentication
        auth = getattr(getattr(component, "settings", None), "auth", None)
        for option, variable, wrong in _missing(auth) if auth is not None else ():
            text = f"the {component.scheme} server's auth {option} '{variable}' {wrong}"
            findings.append((Finding("error", text), variable))
    return findings


def _finding(severity: Severity, text: str, model: RouteModel, step: str) -> Finding:
    where = RouteDefinitionError(
        text, route_id=model.route_id, step=step, location=model.defined_at
    )
    return Finding(severity, str(where), model.route_id)


def _unique(findings: list[Finding]) -> list[Finding]:
    return list(dict.fromkeys(findings))
