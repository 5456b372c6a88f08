"""Memory bound of reconcile: 200,000 records a side in a child process (so nothing else this
test run holds counts), read from generators so the records exist only as the check reads
them. The child reports its peak RSS (``VmHWM``: of this process image, where ``ru_maxrss`` would
also count the forking parent's size, which Linux carries over an exec) and the verdict counts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import asyncio, json, resource, sys
from eip import Context, RouteBuilder
from eip.reconcile import callable_source

N = int(sys.argv[1])

def side(right):
    def records():
        for n in range(N):
            if right and n % 200 == 7:
                continue  # only on the left
            yield {"customer_number": f"C-{n:07d}", "name": f"Customer {n}",
                   "email": f"customer.{n}@example.com", "segment": "b2b" if n % 3 else "b2c",
                   "revenue_cents": n % 9973 * 100 + (1 if right and n % 100 == 50 else 0)}
        if right:
            for n in range(N, N + N // 200):
                yield {"customer_number": f"C-{n:07d}", "name": "only right"}
    return records

class Check(RouteBuilder):
    def configure(self):
        (self.from_("direct:check").route_id("memory-check")
             .reconcile(callable_source(side(False), name="crm"),
                        callable_source(side(True), name="erp"), key="customer_number"))

def peak_mb():
    status = open("/proc/self/status").read().split("VmHWM:")[1]
    return int(status.split()[0]) / 1024

async def main():
    context = Context()
    context.add_routes(Check())
    await context.start()
    before = peak_mb()
    exchange = await context.template().send("direct:check")
    assert exchange.exception is None, exchange.exception
    await context.stop()
    peak = peak_mb()
    report = exchange.body
    print(json.dumps({"before_mb": before, "peak_mb": peak, "counts": report.counts,
                      "spilled": report.spilled}))

asyncio.run(main())
"""


def test_200k_records_a_side_stay_well_under_the_memory_bound() -> None:
    records = 200_000
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(records)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    only = records // 200
    assert result["counts"] == {
        "same": records - only - sum(1 for n in range(records) if n % 100 == 50),
        "differs": sum(1 for n in range(records) if n % 100 == 50),
        "only_left": only,
        "only_right": only,
        "duplicate": 0,
    }
    assert result["spilled"] is True
    # The bound is 200 MB for a million records a side; 200k must stay well under it, and
    # the run itself must add far less than the ~200 MB the records take as dicts.
    assert result["peak_mb"] < 120, result
    assert result["peak_mb"] - result["before_mb"] < 60, result
