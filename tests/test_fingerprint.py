"""Route fingerprints: what a reload counts as a change (see eip.runtime.fingerprint)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from eip import RouteBuilder
from eip.dsl.model import RouteModel
from eip.runtime.fingerprint import route_fingerprint

ROUTE = """
from eip import RouteBuilder

LIMIT = {limit}


def big(exchange):
    return helper(exchange.message.body) > LIMIT


def helper(body):
    return {helper}


class Mapper:
    def __call__(self, exchange):
        return {mapped}


class Routes(RouteBuilder):
    def configure(self):
        factor = {factor}
        (
            self.from_("direct:in").route_id("r")
            .filter(big)
            .transform(lambda ex: ex.message.body * factor)
            .transform(Mapper())
            .to("log:{{{{out.name}}}}")
        )
"""

BASE = {"limit": 3, "helper": "len(body)", "mapped": "'x'", "factor": 2}


def model(tmp_path: Path, prefix: str = "", changes: dict[str, object] | None = None) -> RouteModel:
    name = "fp_routes"
    file = tmp_path / f"{name}.py"
    file.write_text(prefix + ROUTE.format(**{**BASE, **(changes or {})}))
    module = _load(file, f"_fp_{name}_{len(list(tmp_path.iterdir()))}")
    builder: RouteBuilder = module.Routes()
    return builder.build()[0]


def _load(file: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, file)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def digest(tmp_path: Path, value: str = "a", **changes: object) -> str:
    found = model(tmp_path, "", changes)
    return route_fingerprint(found, lambda text: text.replace("{{out.name}}", value), [tmp_path])


def test_the_same_code_loaded_twice_is_unchanged(tmp_path: Path) -> None:
    assert digest(tmp_path) == digest(tmp_path)


def test_moved_lines_are_unchanged(tmp_path: Path) -> None:
    first = route_fingerprint(model(tmp_path), None, [tmp_path])
    moved = route_fingerprint(model(tmp_path, prefix="\n\n# moved down\n\n"), None, [tmp_path])
    assert first == moved


def test_each_kind_of_change_is_seen(tmp_path: Path) -> None:
    base = digest(tmp_path)
    changed = {
        "a global constant": digest(tmp_path, limit=4),
        "a helper the predicate calls": digest(tmp_path, helper="len(body) + 1"),
        "a method of a class defined there": digest(tmp_path, mapped="'y'"),
        "a closure value": digest(tmp_path, factor=3),
        "a placeholder's resolved value": digest(tmp_path, value="b"),
    }
    same = [what for what, found in changed.items() if found == base]
    assert same == [], f"not seen as changes: {same}"


def test_a_resolved_value_is_not_kept_in_the_digest(tmp_path: Path) -> None:
    secret = "s3cr3t-value-that-must-not-show"
    found = digest(tmp_path, value=secret)
    assert secret not in found
    assert len(found) == 64  # a sha256 hex digest, nothing else
