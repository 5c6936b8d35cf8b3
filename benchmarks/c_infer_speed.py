"""Time the compiled C99 reference (examples/c/bstdg_infer.c) alone on a dataset's test split.

    BSTDG_DATA=/path/to/datasets python benchmarks/c_infer_speed.py HEADER [--dataset mnist] [--limit-test N]

Compiles the reference against ``HEADER`` (a ``bstdg export --format c`` header), writes the
test split as a samples file of format 2, runs the program ``--repeats`` times with ``-d``
and prints the best time, images/s and the strict accuracy of its predictions.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from bstdg.data import load_events
from bstdg.export import c_format


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("header")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--limit-test", type=int, default=None)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    ex = c_format.read_c_header(args.header)
    test = load_events(args.dataset, "test", ex.t_max, args.data_dir, args.limit_test)
    with tempfile.TemporaryDirectory(prefix="bstdg-c-speed-") as tmp:
        exe = c_format.compile_reference(args.header, tmp)
        samples = c_format.write_event_samples(Path(tmp) / "samples.txt", test.events, ex.t_max)
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            done = subprocess.run([str(exe), "-d", str(samples)], capture_output=True, text=True, check=True)
            times.append(time.perf_counter() - start)
        size = samples.stat().st_size
    v = np.array(done.stdout.split(), np.int64).reshape(-1, 3)
    result = {"n_samples": len(v), "best_s": min(times), "samples_per_s": len(v) / min(times),
              "samples_file_bytes": size, "accuracy": float(np.mean((v[:, 0] == test.labels) & (v[:, 1] == 0)))}
    print(f"C reference: {result['n_samples']} samples, best of {args.repeats} {result['best_s']:.2f} s "
          f"({result['samples_per_s']:,.0f} samples/s), samples file {size:,} B, accuracy {result['accuracy']:.4f}")
    return result


if __name__ == "__main__":
    main()
