"""Throughput of the dedup stage's paragraph-level exact dedup on the demo's filtered shards.

Two figures, on the shards matching --data (default data/filtered/*/*.parquet; read only,
outputs go to a temporary directory):

- one core, batch functions only: `find_units` + `unit_keys` (split, normalise, 128-bit keys)
  over every document, MB of text per second;
- the whole stage (`dedup_corpus`) with paragraph dedup on and off, `--workers` processes: the
  difference is what the three paragraph passes (keys, join, rewrite) cost end to end.

It prints the CPU model and the load average next to the figures, since the machine may be
shared.

    PYTHONPATH=lib python benchmarks/paragraph_dedup_throughput.py [--data ...] [--workers 2]
"""

from __future__ import annotations

import argparse
import glob
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from lmbuild.dedup.config import resolve
from lmbuild.dedup.paragraphs import find_units, unit_keys
from lmbuild.dedup.run import dedup_corpus
from lmbuild.params import validate_section


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/filtered/*/*.parquet")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--unit", default="paragraph", choices=["paragraph", "line"])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    files = sorted(glob.glob(args.data))
    if not files:
        sys.exit(f"no shards match {args.data}")
    os.environ.setdefault("LMBUILD_NO_PROGRESS", "1")
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; load average {os.getloadavg()}")

    def cfg_for(enabled: bool):
        dedup = {"paragraphs": {"enabled": enabled, "unit": args.unit}}
        return resolve({"common": validate_section("common", {}), "dedup": validate_section("dedup", dedup)})

    cfg = cfg_for(True)
    tables = [pq.read_table(f, columns=["text"]) for f in files]
    mb = sum(int(pc.sum(pc.binary_length(t.column("text"))).as_py() or 0) for t in tables) / 2**20
    best = float("inf")
    for _ in range(args.repeat):
        start = time.perf_counter()
        units = 0
        for t in tables:
            for batch in t.to_batches(max_chunksize=cfg.batch_rows):
                u = find_units(batch.column("text"), args.unit)
                unit_keys(u, cfg.normalize, cfg.seed, cfg.paragraphs["min_chars"])
                units += len(u.starts)
        best = min(best, time.perf_counter() - start)
    print(f"batch functions, one core: {mb:.1f} MB, {units} units in {best:.2f} s = {mb / best:.1f} MB/s")

    in_dir = Path(files[0]).parents[1]
    times = {}
    for enabled in (False, True):
        runs = []
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                metrics, _, _ = dedup_corpus(cfg_for(enabled), {"workers": args.workers}, in_dir,
                                             Path(tmp) / "kept", Path(tmp) / "removed")
                runs.append(time.perf_counter() - start)
        times[enabled] = min(runs)
    extra = times[True] - times[False]
    p = metrics["paragraphs"]
    print(f"stage, {args.workers} workers: {times[False]:.2f} s without paragraph dedup, {times[True]:.2f} s with "
          f"(+{extra:.2f} s; {mb / max(extra, 1e-9):.1f} MB/s for the paragraph passes); "
          f"{p['units_removed']} of {p['units']} units removed, {p['chars_removed']} characters")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
