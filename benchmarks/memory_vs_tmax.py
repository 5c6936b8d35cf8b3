"""Peak memory and time of BSTDG training as t_max grows (the rule stores spike times only,
so neither should grow with t_max).

    python benchmarks/memory_vs_tmax.py --t-max 64,256,1024,4096 --samples 5000
    python benchmarks/memory_vs_tmax.py --arch conv16k5,pool2,fc128 --samples 2000

Each t_max runs in a fresh process (so peak RSS is that run's own): it latency-encodes the
first N MNIST training images with that t_max, builds the network (784-600-10, or
``--arch``: any ``bstdg train --arch``, conv layers included, through the same
``initial_model`` / ``make_trainer`` as ``bstdg train``) and trains one epoch. Reports the
process's peak resident memory (``resource.getrusage``, includes the Python interpreter,
numpy, Numba and the data) and the epoch's wall time. Writes
``runs/bench/memory_vs_tmax.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from dataclasses import replace
from bstdg.data import load_events
from bstdg.recipe import TrainConfig
from bstdg.train import initial_model, make_trainer
t_max, n, data_dir, arch = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] or None, sys.argv[4] or None
train = load_events("mnist", "train", t_max, data_dir, n)
config = replace(TrainConfig(), t_max=t_max, epochs=1, arch=arch)
meta = {"dataset": "mnist", "encoder": train.encoder.to_dict()}
trainer = make_trainer(initial_model(config, train.events, train.n_classes, meta), config)
trainer.train_epoch(train.events.take(range(64)), train.labels[:64], progress=False)  # compile
start = time.perf_counter()
trainer.train_epoch(train.events, train.labels, progress=False)
seconds = time.perf_counter() - start
print(json.dumps({"t_max": t_max, "samples": n, "arch": arch or "fc600", "epoch_s": seconds,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main(t_maxes, samples: int, data_dir=None, arch=None) -> list[dict]:
    rows = []
    for t_max in t_maxes:
        out = subprocess.run([sys.executable, "-c", CHILD, str(t_max), str(samples), data_dir or "", arch or ""],
                             check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"{r['arch']}, t_max {r['t_max']:6d}: peak RSS {r['peak_rss_mib']:7.1f} MiB, "
              f"epoch of {r['samples']} samples {r['epoch_s']:.2f} s", flush=True)
    return rows


def main_cli(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--t-max", default="64,256,1024,4096")
    p.add_argument("--samples", type=int, default=5000)
    p.add_argument("--data-dir")
    p.add_argument("--arch", help="layers as in bstdg train --arch (default: 784-600-10)")
    p.add_argument("--out", default="runs/bench/memory_vs_tmax.json")
    a = p.parse_args(argv)
    rows = main([int(t) for t in a.t_max.split(",")], a.samples, a.data_dir, a.arch)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main_cli())
