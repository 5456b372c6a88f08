"""``python -m benchmarks [NAME] [--quick] [--profile]``.

With no name, list the benchmarks. ``--quick`` runs a short version (well under 60 s) for
smoke checks; ``--profile`` runs the benchmark's profile instead, when it has one.
"""

from __future__ import annotations

import argparse
import sys

from benchmarks import BENCHMARKS, load, runner


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description="Run one eip benchmark, or list them."
    )
    parser.add_argument("name", nargs="?", help="the benchmark to run (omit to list them)")
    parser.add_argument("--quick", action="store_true", help="a short run for smoke checks")
    parser.add_argument(
        "--profile", action="store_true", help="profile eip's side of the benchmark instead"
    )
    args = parser.parse_args(argv)
    if args.name is None:
        width = max(len(name) for name in BENCHMARKS)
        for name, bench in sorted(BENCHMARKS.items()):
            print(f"{name:<{width}}  {bench.summary}")
        return 0
    if args.name not in BENCHMARKS:
        print(
            f"unknown benchmark '{args.name}' (benchmarks: {', '.join(sorted(BENCHMARKS))})",
            file=sys.stderr,
        )
        return 2
    if args.profile:
        profile = getattr(load(args.name), "profile", None)
        if profile is None:
            print(f"benchmark '{args.name}' has no profile", file=sys.stderr)
            return 2
        profile(args.quick)
        return 0
    runner(args.name).run(args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
