"""``cron:`` on two real instances sharing one PostgreSQL store, one of them SIGKILLed mid-run
(eip/components/cron.py, eip/stores/schedules_postgres.py).

Two ``python -m eip.cli run`` processes run the same route file: a schedule every second
(six fields, seconds first) whose run logs its start and end and takes 0.4 s, with
``lease_ttl=2``. Once both are up and have shared the work for a while, the one whose run has
just started is SIGKILLed. The survivor must take its run over within the lease
(``misfire=run_once``), and the store's history and the runs' logs must show that no fire time
was claimed twice or skipped, and that the completed runs cover every fire time exactly once
(each run covers ``(previous, scheduled]``). The take-over is a recovery run at the lease's
expiry, or the next fire time's run when that comes first; either covers the dead run.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg

from tests.components.cron_support import PG_DSN, drop_tables, unique_table

ROOT = Path(__file__).resolve().parent.parent
EIP_RUN = [sys.executable, "-m", "eip.cli", "run"]
LEASE_TTL = 2.0
RUN_SECONDS = 0.4

ROUTES = '''
"""The route of tests/test_cron_kill.py: a run every second, logged to <log dir>/<pid>.jsonl."""

import asyncio
import itertools
import json
import os
import time

from eip import Exchange, RouteBuilder, cron
from eip import headers as H

LOGS = os.environ["CRON_KILL_LOGS"]


def write(line: dict) -> None:
    with open(os.path.join(LOGS, f"{os.getpid()}.jsonl"), "a") as handle:
        handle.write(json.dumps(line) + "\\n")


async def work(exchange: Exchange) -> None:
    h = exchange.headers
    line = {
        "pid": os.getpid(),
        "fire": h[H.CRON_FIRE],
        "scheduled": h.get(H.CRON_SCHEDULED_TIME),
        "previous": h.get(H.CRON_PREVIOUS_TIME),
    }
    write({**line, "event": "start", "at": time.time()})
    await asyncio.sleep(float(os.environ["CRON_KILL_RUN_SECONDS"]))
    write({**line, "event": "end", "at": time.time()})


class Tick(RouteBuilder):
    def configure(self) -> None:
        spec = cron(
            "tick",
            "* * * * * *",
            store=os.environ["CRON_KILL_DSN"],
            table=os.environ["CRON_KILL_TABLE"],
            lease_ttl=float(os.environ["CRON_KILL_LEASE_TTL"]),
        )
        self.from_(spec).route_id("tick").process(work)
'''


def start(workdir: Path, routes: Path, env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
    with open(workdir / f"{name}.log", "wb") as log:
        return subprocess.Popen(
            [*EIP_RUN, str(routes), "--no-management", "--shutdown-timeout", "5"],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def runs_logged(logs: Path) -> list[dict[str, Any]]:
    lines = []
    for path in logs.glob("*.jsonl"):
        lines += [json.loads(line) for line in path.read_text().splitlines() if line]
    return lines


async def test_a_killed_instance_loses_its_run_within_the_lease(tmp_path: Path) -> None:
    table = unique_table()
    logs = tmp_path / "runs"
    logs.mkdir()
    routes = tmp_path / "cron_kill_routes.py"
    routes.write_text(ROUTES)
    env = {
        **os.environ,
        "CRON_KILL_LOGS": str(logs),
        "CRON_KILL_DSN": PG_DSN,
        "CRON_KILL_TABLE": table,
        "CRON_KILL_LEASE_TTL": str(LEASE_TTL),
        "CRON_KILL_RUN_SECONDS": str(RUN_SECONDS),
        "PYTHONPATH": str(ROOT),
    }
    children = {name: start(tmp_path, routes, env, name) for name in ("a", "b")}
    conn = await asyncpg.connect(PG_DSN)
    try:

        async def both_started() -> bool:
            for name, child in children.items():
                assert child.poll() is None, (tmp_path / f"{name}.log").read_text()
            return all(
                "route tick started" in (tmp_path / f"{n}.log").read_text() for n in children
            )

        await wait_for(both_started, 30, "both instances to start")
        await asyncio.sleep(3.0)  # both share the schedule for a while

        pids = {child.pid: name for name, child in children.items()}

        async def a_run_just_started() -> tuple[int, float] | None:
            row = await conn.fetchrow(
                f'SELECT run_owner, run_since, run_due FROM "{table}" WHERE name = $1', "tick"
            )
            if row is None or row["run_owner"] is None or row["run_due"] is None:
                return None
            pid = int(row["run_owner"].split(":")[1])
            if pid in pids and time.time() - row["run_since"] < 0.15:
                return pid, row["run_due"]
            return None

        victim, killed_due = await wait_for(a_run_just_started, 10, "a run to start")
        os.kill(victim, signal.SIGKILL)
        killed_at = time.time()
        children[pids[victim]].wait(5)
        survivor = children[pids[next(p for p in pids if p != victim)]]

        async def taken_over() -> Any:
            return await conn.fetchrow(
                f"SELECT 1 FROM \"{table}_fires\" WHERE name = 'tick' AND claimed_at > $1 "
                "AND outcome IN ('fired', 'recovered') AND finished_at IS NOT NULL",
                killed_at + 0.05,
            )

        await wait_for(taken_over, LEASE_TTL + 5, "the survivor to take the run over")
        await asyncio.sleep(2.0)  # and go on alone for a while
        survivor.send_signal(signal.SIGTERM)
        assert survivor.wait(15) == 0, (tmp_path / f"{pids[survivor.pid]}.log").read_text()
        rows = await conn.fetch(
            "SELECT due, outcome, owner, previous, claimed_at, finished_at, ok, note "
            f"FROM \"{table}_fires\" WHERE name = 'tick' ORDER BY due, claimed_at"
        )
    finally:
        for child in children.values():
            if child.poll() is None:
                child.kill()
                child.wait(5)
        await conn.close()
        await drop_tables(table)

    # -- the store: every fire time claimed once, none skipped ------------------------------
    claims = [r for r in rows if r["outcome"] != "recovered"]
    dues = [r["due"] for r in claims]
    assert dues == [dues[0] + n for n in range(len(dues))], "a fire time is missing or doubled"
    assert len(dues) >= 6
    owners = Counter(int(r["owner"].split(":")[1]) for r in claims)
    assert set(owners) <= set(pids)
    # the killed run: claimed by the victim, never finished
    [dead] = [r for r in claims if r["finished_at"] is None and r["outcome"] == "fired"]
    assert dead["due"] == killed_due
    assert int(dead["owner"].split(":")[1]) == victim
    # the take-over: the survivor's first run after the kill, within the lease, covers the
    # dead run's times: a recovery at the lease's expiry, or the next fire time's run when
    # that came first (its history row notes the dead run)
    runs = [r for r in rows if r["outcome"] in ("fired", "recovered")]
    takeover = next(r for r in runs if r["claimed_at"] > killed_at)
    assert int(takeover["owner"].split(":")[1]) == survivor.pid
    assert takeover["claimed_at"] - killed_at <= LEASE_TTL + 0.5
    assert takeover["previous"] == dead["previous"]
    assert takeover["outcome"] == "recovered" or "did not finish" in takeover["note"]
    assert takeover["finished_at"] is not None
    assert takeover["ok"] is True
    # after the kill, only the survivor claims
    after = [r for r in claims if r["claimed_at"] > killed_at + 0.05]
    assert {int(r["owner"].split(":")[1]) for r in after} == {survivor.pid}

    # -- the runs: completed runs cover every fire time exactly once -------------------------
    lines = runs_logged(logs)
    ends = [line for line in lines if line["event"] == "end"]
    starts = Counter(
        (line["fire"], line["scheduled"]) for line in lines if line["event"] == "start"
    )
    assert all(n == 1 for n in starts.values()), "a fire time was started twice"
    completed = sorted(ends, key=lambda line: line["scheduled"])
    for before, run in itertools.pairwise(completed):
        assert run["previous"] == before["scheduled"], (before, run)
    assert not any(
        line["scheduled"] == killed_due and line["fire"] == "schedule" for line in ends
    ), "the killed run must not have finished"
    # every claimed run with a finish has its end logged, and vice versa
    finished = sorted(r["due"] for r in rows if r["finished_at"] is not None)
    assert finished == sorted(run["scheduled"] for run in ends)
