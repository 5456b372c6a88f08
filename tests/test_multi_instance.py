"""Three ``eip run`` processes on one RabbitMQ and one PostgreSQL, one of them SIGKILLed
mid-stream and restarted: a deployment in miniature (issue 12, point 2).

The route (``tests/multi_instance_routes.py``) follows the CRM customer-events route: events
spread by customer over six quorum queues (consistent hash), each consumed by one active
instance at a time (single active consumer; every instance stands by for the others' queues),
an idempotent consumer whose claim is a PostgreSQL transaction shared with the effect, and an
aggregator on PostgreSQL whose groups mix customers from different queues, so their inputs
land on different instances. The harness is :mod:`tests.multi_instance_support`.

Checked: every unique event's effect happens exactly once (the effects table has no unique
constraint: a second effect would show), each customer's updates are applied in order
(checked from the effects' order, and counted by the effect itself), every group completes
exactly once with exactly its 20 events, nothing is dead-lettered or logged as failed, and
every instance stops cleanly.

Sized for the suite (~20-50 s here, depending on the load): 500 customers, 4 updates each,
10% duplicated (2,200 messages). ``python -m benchmarks multi_instance`` runs the full 20,000
events and measures the CPU per message of the broker, PostgreSQL and the instances.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.multi_instance_support import Plan, run_deployment
from tests.rabbitmq.plugins import consistent_hash_exchange

__all__ = ["consistent_hash_exchange"]  # the fixture, used by name

SUITE_PLAN = Plan(customers=500, updates=4, queues=6, instances=3, timeout=90.0)


@pytest.mark.timeout(150)
def test_three_instances_apply_each_event_once_in_order_through_a_kill(
    tmp_path: Path, consistent_hash_exchange: None
) -> None:
    report = asyncio.run(run_deployment(SUITE_PLAN, tmp_path))
    print("\n" + report.summary())
    plan = report.plan
    assert report.published == plan.unique + plan.duplicates == 2_200
    assert report.problems == []
    assert not report.stalled
    assert report.applied_rows == plan.unique
    assert report.groups_completed == plan.groups == 100
    # The kill happened mid-stream, and the victim had done its share before it.
    assert 0 < report.applied_at_kill < plan.unique
    assert report.applied_by.get(f"i{plan.victim}", 0) > 0
    survivors = {f"i{i}" for i in range(plan.instances) if i != plan.victim}
    assert all(report.applied_by.get(name, 0) > 0 for name in survivors)
    # Groups really mixed instances: customers of one territory sit on different queues.
    assert report.groups_across_instances > plan.groups // 2
