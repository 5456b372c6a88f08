"""``python -m benchmarks [NAME | all] [--quick] [--profile]``.

With no name, list the benchmarks. ``--quick`` runs a short version (well under 60 s) for
smoke checks; ``--profile`` runs the benchmark's profile instead, when it has one.

``all`` runs every registered benchmark (or those named by ``--only a,b``), each in a child
process of its own with a deadline (``--timeout``), and prints one summary table of their
RESULT lines against the targets in :mod:`benchmarks.targets` (``--markdown`` for a markdown
table; see :mod:`benchmarks._all`).

A benchmark that fails for a reason it can name (:class:`benchmarks._report.BenchmarkFailed`:
the broker dropped a round's connection twice) prints that one line and exits with status 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks import BENCHMARKS, load, runner
from benchmarks._report import BenchmarkFailed

ALL = "all"
DEFAULT_TIMEOUT = 900.0  # seconds per benchmark under ``all``; the longest quick run took ~5 min


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description="Run one eip benchmark, or all, or list them."
    )
    parser.add_argument(
        "name", nargs="?", help=f"the benchmark to run, or '{ALL}' (omit to list them)"
    )
    parser.add_argument("--quick", action="store_true", help="a short run for smoke checks")
    parser.add_argument(
        "--profile", action="store_true", help="profile eip's side of the benchmark instead"
    )
    group = parser.add_argument_group(f"'{ALL}'")
    group.add_argument(
        "--only", metavar="A,B", help="run only these benchmarks (comma-separated), in this order"
    )
    group.add_argument(
        "--markdown", action="store_true", help="print the summary as a markdown table"
    )
    group.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"deadline per benchmark (default {DEFAULT_TIMEOUT:g})",
    )
    group.add_argument(
        "--log-dir", type=Path, metavar="DIR", help="keep each benchmark's output as DIR/NAME.log"
    )
    return parser


def _unknown(names: list[str]) -> int:
    print(
        f"unknown benchmark {', '.join(repr(n) for n in names)} "
        f"(benchmarks: {', '.join(sorted(BENCHMARKS))})",
        file=sys.stderr,
    )
    return 2


def _run_all(args: argparse.Namespace) -> int:
    from benchmarks._all import run_all

    names = list(BENCHMARKS)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        if unknown := [n for n in names if n not in BENCHMARKS]:
            return _unknown(unknown)
    return run_all(
        names,
        quick=args.quick,
        timeout=args.timeout,
        as_markdown=args.markdown,
        log_dir=args.log_dir,
    )


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.name is None:
        width = max(len(name) for name in [*BENCHMARKS, ALL])
        for name, bench in sorted(BENCHMARKS.items()):
            print(f"{name:<{width}}  {bench.summary}")
        print(f"{ALL:<{width}}  every benchmark above, one summary table against the targets")
        return 0
    if args.name == ALL:
        return _run_all(args)
    if args.only or args.markdown or args.log_dir:
        parser.error(f"--only, --markdown and --log-dir go with '{ALL}'")
    if args.name not in BENCHMARKS:
        return _unknown([args.name])
    try:
        if args.profile:
            profile = getattr(load(args.name), "profile", None)
            if profile is None:
                print(f"benchmark '{args.name}' has no profile", file=sys.stderr)
                return 2
            profile(args.quick)
            return 0
        runner(args.name).run(args.quick)
    except BenchmarkFailed as failed:
        print(f"benchmark {args.name} failed: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
