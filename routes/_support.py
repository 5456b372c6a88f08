"""Helpers shared by the example routes: where the data lives and how the demo seeds it.

``<data>`` is ``$EIP_DATA_DIR`` (default ``./data``); durable state (idempotent and aggregation
repositories) lives under ``<data>/state/``. With ``EIP_DEMO`` not ``0``, each example has a
one-shot timer route that copies its sample files into its inbox at start.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

__all__ = ["SAMPLES", "copy_samples", "data_dir", "demo_enabled"]

SAMPLES = Path(__file__).parent / "samples"


def data_dir() -> Path:
    return Path(os.environ.get("EIP_DATA_DIR", "data"))


def demo_enabled() -> bool:
    return os.environ.get("EIP_DEMO", "1") != "0"


def copy_samples(samples: Iterable[Path], inbox: Path) -> None:
    """Copy each sample into ``inbox`` atomically: it is written under a hidden temporary
    name (which file consumers never take) and renamed, so no route sees half a file."""
    inbox.mkdir(parents=True, exist_ok=True)
    for sample in samples:
        temp = inbox / f".{sample.name}.tmp"
        shutil.copyfile(sample, temp)
        temp.replace(inbox / sample.name)
