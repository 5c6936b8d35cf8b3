#!/usr/bin/env python3
"""Inference (event-driven vs time-stepped) and training throughput on MNIST.

Prints the figures and writes them as JSON to runs/bench/bench.json (or --out). Options are
those of ``bstdg bench``; see benchmarks/README.md for what each figure means.

    python benchmarks/bench_inference.py [--model runs/mnist] [--samples 10000]
        [--dense-samples 256] [--repeats 5] [--data-dir D] [--json] [--out FILE]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, installed or not
from bstdg.cli import Parser, UsageError, add_bench_arguments, bench_command, fail, run_guarded

DEFAULT_OUT = "runs/bench/bench.json"


def main(argv=None) -> int:
    parser = Parser(description=__doc__.split("\n\n")[0])
    add_bench_arguments(parser)
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"JSON file (default {DEFAULT_OUT})")
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        return fail(str(exc), 2)
    return run_guarded(bench_command, **vars(args))


if __name__ == "__main__":
    sys.exit(main())
