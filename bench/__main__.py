"""`python -m bench run [--quick]`: the comparison of wizd with other job queues
(bench/run.py). The single-purpose benchmarks run as modules: python -m bench.core,
bench.daemon, bench.flows, bench.metrics_scrape, bench.postgres, and bench.scaling (the
PostgreSQL queues with 1, 2 and 4 processes)."""

from __future__ import annotations

import argparse
import sys

from bench import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run.add_arguments(
        commands.add_parser("run", help="every system on every workload; writes bench/results/")
    )
    args = parser.parse_args(argv)
    if args.command == "run":
        return run.run(args)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
