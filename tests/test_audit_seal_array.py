"""seal_array: the SQLite store's batch value, byte for byte the JSON array of seal's lines."""

from __future__ import annotations

from eip.audit.record import GENESIS, Entry, entry, line_of, seal, seal_array


def _entries(count: int) -> list[Entry]:
    made = []
    for n in range(count):
        fields = {"z": n, "a": [n, "é"]} if n % 3 == 0 else None
        key = None if n % 2 else f"key-{n}"
        made.append(
            entry("r", f"ex-{n}", "completed", endpoints=["mock:a"], fields=fields, key=key)
        )
    return made


def test_seal_array_is_the_array_of_seal_lines() -> None:
    old = seal(_entries(7), "chain", 3, "ab" * 32, when=1_700_000_000.25)
    records, digest = seal_array(_entries(7), "chain", 3, "ab" * 32, when=1_700_000_000.25)
    assert records == b"[%s]" % b",".join(line_of(data, hashed) for _, data, hashed in old)
    assert digest == old[-1][2]


def test_seal_array_of_one_and_none() -> None:
    one = seal(_entries(1), "c", 0, GENESIS, when=5.0)
    records, digest = seal_array(_entries(1), "c", 0, GENESIS, when=5.0)
    assert records == b"[" + line_of(one[0][1], one[0][2]) + b"]"
    assert digest == one[0][2]
    assert seal_array([], "c", 9, "f" * 64) == (b"[]", "f" * 64)
