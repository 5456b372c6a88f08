"""Aggregation strategies on their own: folding, failures that stick, type errors."""

from __future__ import annotations

from functools import reduce

import pytest

from eip import Exchange
from eip.processors.base import describe_callable
from eip.processors.strategies import (
    AggregationStrategy,
    collect_bodies,
    concat,
    merge_dicts,
    use_latest,
    use_original,
)


def fold(strategy: AggregationStrategy, *bodies: object) -> Exchange:
    result: Exchange | None = None
    for body in bodies:
        result = strategy(result, Exchange(body))
    assert result is not None
    return result


def test_collect_bodies_in_order() -> None:
    assert fold(collect_bodies, 1, "two", None).body == [1, "two", None]


def test_merge_dicts_later_wins_and_inputs_are_untouched() -> None:
    first = {"a": 1, "b": 1}
    result = fold(merge_dicts, first, {"b": 2}, {"c": 3})
    assert result.body == {"a": 1, "b": 2, "c": 3}
    assert first == {"a": 1, "b": 1}


def test_merge_dicts_needs_dicts() -> None:
    with pytest.raises(TypeError, match="merge_dicts needs dict bodies, got list"):
        fold(merge_dicts, {"a": 1}, [1])


def test_use_latest_and_use_original() -> None:
    assert fold(use_latest, 1, 2, 3).body == 3
    assert fold(use_original, 1, 2, 3).body == 1


def test_concat_str_and_bytes() -> None:
    assert fold(concat(), "a", "b").body == "ab"
    assert fold(concat(", "), "a", "b", "c").body == "a, b, c"
    assert fold(concat("|"), b"a", b"b").body == b"a|b"
    assert fold(concat(b"\n"), "x", "y").body == "x\ny"
    assert describe_callable(concat(", ")) == "concat(', ')"


def test_concat_refuses_mixed_or_other_bodies() -> None:
    with pytest.raises(TypeError, match="cannot join str and bytes"):
        fold(concat(), "a", b"b")
    with pytest.raises(TypeError, match="needs str or bytes bodies, got int"):
        fold(concat(), 1, 2)


@pytest.mark.parametrize(
    "strategy", [collect_bodies, merge_dicts, use_latest, use_original, concat(",")]
)
def test_the_first_failure_sticks(strategy: AggregationStrategy) -> None:
    ok = {"k": "v"} if strategy is merge_dicts else "ok"
    first, failed, later = Exchange(ok), Exchange(ok), Exchange(ok)
    failed.exception = ValueError("first")
    later.exception = ValueError("later")
    result = reduce(strategy, [failed, Exchange(ok), later], first)
    assert str(result.exception) == "first"
    failed_first = strategy(None, failed)
    assert strategy(failed_first, Exchange(ok)).exception is failed.exception
