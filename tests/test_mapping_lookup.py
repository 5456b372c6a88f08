"""Code lists in the field mapper: ``lookup`` through a CSV table that reloads when its file
changes (eip/lookups.py, re-exported by eip.mapping)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest

from eip import MappingError, RouteDefinitionError
from eip.mapping import CsvTable, FieldMapper, field, lookup

REGIONS = "crm_region,hr_region,cost_center\nNorth,CN-N,CC-100\nSouth,CN-S,CC-200\n"


def write(path: Path, text: str) -> None:
    """Replace the file atomically, as the docs ask, and make sure its mtime moves on."""
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(text, encoding="utf-8")
    old = path.stat().st_mtime_ns if path.exists() else 0
    os.replace(temp, path)
    stat = path.stat()
    if stat.st_mtime_ns <= old:  # a coarse clock: same tick as the old version
        os.utime(path, ns=(stat.st_atime_ns, old + 1_000_000))


@pytest.fixture
def regions(tmp_path: Path) -> Path:
    path = tmp_path / "regions.csv"
    write(path, REGIONS)
    return path


def mapper(table: CsvTable) -> FieldMapper[dict[str, Any]]:
    return FieldMapper(
        field("region_code", source="region", convert=lookup(table, "hr_region")),
        field("cost_center", source="region", convert=lookup(table, "cost_center")),
        unknown="ignore",
    )


def test_a_lookup_translates_through_the_table(regions: Path) -> None:
    table = CsvTable(regions, key="crm_region", normalise=str.casefold)
    to_hr = mapper(table)
    assert to_hr({"region": "north"}) == {"region_code": "CN-N", "cost_center": "CC-100"}
    assert to_hr({"region": "SOUTH"}) == {"region_code": "CN-S", "cost_center": "CC-200"}
    assert len(table) == 2
    assert "North" in table
    assert table.row("south") == {
        "crm_region": "South",
        "hr_region": "CN-S",
        "cost_center": "CC-200",
    }
    assert table.columns == ("crm_region", "hr_region", "cost_center")


def test_an_unknown_code_is_a_mapping_error_naming_field_value_and_table(regions: Path) -> None:
    table = CsvTable(regions, key="crm_region")
    with pytest.raises(MappingError, match=r"\$\.region: cannot convert 'West'.*'West' is not in"):
        mapper(table)({"region": "West"})
    fallback = lookup(table, "hr_region", default="CN-OTHER")
    assert fallback("West") == "CN-OTHER"


def test_the_table_reloads_when_the_file_changes(regions: Path) -> None:
    table = CsvTable(regions, key="crm_region", check_every=0)
    to_hr = mapper(table)
    assert to_hr({"region": "North"})["region_code"] == "CN-N"
    write(regions, REGIONS.replace("CN-N,", "CN-NORTH,") + "West,CN-W,CC-300\n")
    assert to_hr({"region": "North"})["region_code"] == "CN-NORTH"
    assert to_hr({"region": "West"}) == {"region_code": "CN-W", "cost_center": "CC-300"}
    assert table.version == 2


def test_checks_are_throttled_by_check_every(regions: Path) -> None:
    table = CsvTable(regions, key="crm_region", check_every=3600)
    write(regions, REGIONS.replace("CN-N,", "CN-NORTH,"))
    assert lookup(table, "hr_region")("North") == "CN-N"  # not checked again yet
    assert table.refresh() is True
    assert lookup(table, "hr_region")("North") == "CN-NORTH"
    assert table.refresh() is False  # unchanged since


def test_a_broken_version_is_refused_and_the_last_good_one_kept(
    regions: Path, caplog: pytest.LogCaptureFixture
) -> None:
    table = CsvTable(regions, key="crm_region", check_every=0)
    code = lookup(table, "hr_region")
    with caplog.at_level(logging.WARNING, logger="eip.mapping"):
        write(regions, "region,hr_region\nNorth,XX\n")  # the key column is gone
        assert code("North") == "CN-N"
        assert code("South") == "CN-S"  # refused once, not re-read and re-logged per lookup
        assert table.last_error == "no column crm_region (columns: region, hr_region)"
        write(regions, REGIONS + "North,CN-N2,CC-101\n")  # North twice
        assert code("North") == "CN-N"
        assert table.last_error is not None
        assert "key 'North' twice (line 4)" in table.last_error
        regions.unlink()
        assert code("North") == "CN-N"
        assert table.last_error == "cannot read it: no such file or directory"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert all(str(regions) in w and "keeping the previous one" in w for w in warnings)
    write(regions, REGIONS.replace("CN-N,", "CN-N3,"))
    assert code("North") == "CN-N3"
    assert table.last_error is None
    assert table.version == 2


def test_a_table_that_cannot_be_used_fails_where_it_is_declared(tmp_path: Path) -> None:
    with pytest.raises(RouteDefinitionError, match=r"lookup table .*absent.csv: no such file"):
        CsvTable(tmp_path / "absent.csv", key="code")
    path = tmp_path / "codes.csv"
    write(path, "code;name\nA;Alpha\n")
    with pytest.raises(RouteDefinitionError, match=r"no column code \(columns: code;name\)"):
        CsvTable(path, key="code")  # wrong delimiter: one column named "code;name"
    table = CsvTable(path, key="code", delimiter=";")
    with pytest.raises(RouteDefinitionError, match=r"has no column 'label'.*valid options: code"):
        lookup(table, "label")
    with pytest.raises(RouteDefinitionError, match="no column label"):
        CsvTable(path, key="code", delimiter=";", columns=("label",))


def test_a_dict_is_a_table_too() -> None:
    departments = {"inside-sales": {"code": "D-410"}, "field-sales": {"code": "D-420"}}
    assert lookup(departments, "code")("field-sales") == "D-420"
    assert lookup({"N": "North"})("N") == "North"
    with pytest.raises(LookupError, match="'S' is not in a table of 1 codes"):
        lookup({"N": "North"})("S")
