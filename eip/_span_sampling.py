"""Ratio sampling for eip's lean spans (see :mod:`eip.spans`): the SDK's
``ParentBased(TraceIdRatioBased(rate))`` without a sampler call per span, and an unsampled
exchange carried by one small object that records nothing.

Why: at 1% sampling 99 exchanges in 100 are not recorded, and tracing must then cost them next
to nothing (issue 15: at least 0.9 of the untraced rate). The SDK's rule is kept: a root span
is sampled when the low 64 bits of its trace id are below the sampler's bound, a child follows
its parent (ParentBased's default delegates). Only the order differs: the decision is drawn
first and the trace id to match it after. The number of roots between two sampled ones is
drawn at once (geometric, with the SDK's own probability ``bound / 2**64``), so the decisions
are the same independent draws as the SDK's, and an unsampled root costs a count down and an
object. Its trace id (low bits at or above the bound, as the rule says) and span id are drawn
when something reads its context: a propagator, a log line, a failure record.
"""

from __future__ import annotations

import math
import random
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanContext, TraceFlags

__all__ = [
    "EMPTY_STATE",
    "NOT_SAMPLED",
    "SAMPLED",
    "RatioRoots",
    "Unsampled",
    "parent_based_root",
    "ratio_bound",
    "unsampled_type",
]

SAMPLED = TraceFlags(TraceFlags.SAMPLED)
NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
EMPTY_STATE = trace.TraceState()
_LOW = 1 << 64  # TraceIdRatioBased decides on the trace id's low 64 bits
_NEVER = 1 << 62  # roots to skip when the bound is 0: sampled never


def parent_based_root(sampler: Any) -> Any:
    """The root sampler of ``sampler`` when it is the SDK's ParentBased with the default
    delegates (a child follows its parent's flag, local or remote); None otherwise."""
    from opentelemetry.sdk.trace import sampling

    if not isinstance(sampler, sampling.ParentBased) or type(sampler).__module__ != (
        sampling.__name__
    ):
        return None  # a ParentBased of someone else's may decide otherwise
    delegates = (
        sampler._remote_parent_sampled,
        sampler._local_parent_sampled,
        sampler._remote_parent_not_sampled,
        sampler._local_parent_not_sampled,
    )
    on, off = sampling.ALWAYS_ON, sampling.ALWAYS_OFF
    return sampler._root if delegates == (on, on, off, off) else None


def ratio_bound(root: Any) -> int | None:
    """The bound of a TraceIdRatioBased root sampler; None for any other."""
    from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

    if type(root) is not TraceIdRatioBased or not isinstance(root.bound, int):
        return None
    return root.bound


class RatioRoots:
    """The root decisions of one tracer provider: ``left`` roots not sampled before the next
    sampled one (read and counted down inline by eip.tracing's route code, too)."""

    __slots__ = ("bound", "left", "log_miss")

    def __init__(self, bound: int) -> None:
        self.bound = min(max(bound, 0), _LOW)
        probability = self.bound / _LOW
        #: log(1 - p), for the geometric gap; 0 when every root is sampled, None when none is
        self.log_miss: float | None = (
            None if self.bound == 0 else (0.0 if self.bound == _LOW else math.log1p(-probability))
        )
        self.left = self._gap()

    def _gap(self) -> int:
        """Roots not sampled before the next sampled one: P(gap >= k) = (1 - p) ** k."""
        log_miss = self.log_miss
        if log_miss is None:
            return _NEVER
        if log_miss == 0.0:
            return 0
        return int(math.log(1.0 - random.random()) / log_miss)  # 1 - random() is in (0, 1]

    def sampled(self) -> int:
        """Called when ``left`` ran out: a sampled root's trace id (0: none is, ever), and the
        gap to the next one drawn."""
        self.left = self._gap()
        if self.log_miss is None:
            return 0
        return (random.getrandbits(64) << 64) | random.randrange(self.bound) or 1


class Unsampled:
    """The span of an exchange that is not sampled: like the API's non-recording span, a
    context and nothing else, and made without a call (a slot, no instance dict: half the
    cost of a NonRecordingSpan). Its context is drawn when first read: low trace id bits at
    or above the bound (not sampled, by the SDK's rule), flagged not sampled. A child of it is
    the same object: nothing of an unsampled trace is recorded, its context is all that
    travels on. Subclassed per provider with ``_roots`` set (see :func:`unsampled_type`);
    like eip's other lean spans it is no API Span (eip.spans.otel_parent wraps it)."""

    __slots__ = ("_made",)
    _made: SpanContext
    trace_flags = NOT_SAMPLED
    _roots: RatioRoots

    def get_span_context(self) -> SpanContext:
        try:
            return self._made
        except AttributeError:
            pass
        bound = self._roots.bound
        low = bound + random.randrange(_LOW - bound) if bound < _LOW else random.getrandbits(64)
        trace_id = (random.getrandbits(64) << 64) | low or 1
        span_id = random.getrandbits(64) or 1
        context: SpanContext = tuple.__new__(
            SpanContext, (trace_id, span_id, False, NOT_SAMPLED, EMPTY_STATE, True)
        )
        self._made = context
        return context

    @staticmethod
    def is_recording() -> bool:
        return False

    def __repr__(self) -> str:
        return f"Unsampled({self.get_span_context()!r})"


def unsampled_type(roots: RatioRoots) -> type[Unsampled]:
    """The unsampled span type of one provider's roots."""
    return type("EipUnsampled", (Unsampled,), {"__slots__": (), "_roots": roots})
