"""The README, followed literally: its "A route" example is run as printed, checked by
``eip check`` and linted with the project's own rules, and its two commands are the ones the
suite and CI really run."""

from __future__ import annotations

import importlib.util
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from eip import Context, RouteBuilder

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def _route_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", _section("A route"), re.S)
    assert blocks, "the README's 'A route' section has no python block"
    return str(blocks[0])


@pytest.fixture
def example_file(tmp_path: Path) -> Path:
    path = tmp_path / "routes_demo.py"
    path.write_text(_route_example(), encoding="utf-8")
    return path


def _load_builder(path: Path) -> RouteBuilder:
    spec = importlib.util.spec_from_file_location("readme_routes_demo", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    builder = module.CustomerSync()
    assert isinstance(builder, RouteBuilder)
    return builder


async def test_the_route_example_runs_as_printed(
    example_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    context = Context()
    context.add_routes(_load_builder(example_file))
    caplog.set_level(logging.INFO)
    async with context:
        template = context.template()
        await template.send(
            "seda:crm.customer.changed",
            b'{"id": "7", "name": "ada lovelace", "source": "web", "region": "CN"}',
        )
        await template.send(
            "seda:crm.customer.changed",
            b'{"id": "8", "name": "alan turing", "source": "web", "region": "EU"}',
        )
        await template.send(
            "seda:crm.customer.changed",
            b'{"id": "9", "name": "grace hopper", "source": "import", "region": "EU"}',
        )
        await template.send("seda:crm.customer.changed", b'{"id": 10}')
    lines = [(r.name, r.getMessage()) for r in caplog.records]
    cn = [m for n, m in lines if n.endswith("erp-cn")]
    erp = [m for n, m in lines if n.endswith("erp") and not n.endswith("erp-cn")]
    bad = [m for n, m in lines if n.endswith("bad-customers")]
    assert len(cn) == 1
    assert "C-7" in cn[0]
    assert "Ada Lovelace" in cn[0]
    assert len(erp) == 1
    assert "C-8" in erp[0]
    assert not any("C-9" in m for _, m in lines)  # filtered: not from the web
    assert len(bad) == 1  # the malformed record went to the handled clause, not retried


def test_eip_check_accepts_the_example(example_file: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "eip.cli", "check", str(example_file)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_the_example_passes_the_projects_own_lint(example_file: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", str(example_file)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_two_commands_are_the_ones_ci_and_the_suite_run() -> None:
    first = re.search(r"```bash\n(.*?)```", README, re.S)
    assert first is not None
    commands = [line.split("#")[0].strip() for line in first.group(1).splitlines()]
    assert commands == ["uv run eip run routes/", "uv run pytest"]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()
    assert ci[-1] == "uv run pytest"  # CI ends on exactly the README's test command
    cli_test = (ROOT / "tests" / "test_cli.py").read_text(encoding="utf-8")
    assert '"-m", "eip.cli", "run", "routes/"' in cli_test  # the run command is tested
