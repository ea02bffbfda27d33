"""Peak memory of acquire and filter against corpus size.

Builds JSONL corpora of 1x and 4x a base size from the demo texts (each copy made distinct),
runs acquire then filter on each with one worker (so the stage is one process), and reports
every stage's peak resident set size. Memory is bounded when the 4x peak stays within 1.3x of
the 1x peak: stages stream record batches and never hold a corpus in memory.

    python benchmarks/memory_scaling.py [--base-mb 16] [--scales 1 4]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def demo_texts(limit_mb: float) -> list[str]:
    sys.path.insert(0, str(REPO / "lib"))
    from lmbuild.acquire.demo import DEMO_DATASETS

    texts, size = [], 0
    for name in ("wiki_en", "news_lee", "python_docs", "jokes", "wiki_stemmed"):
        for rec in DEMO_DATASETS[name].records():
            if isinstance(rec.value, str) and rec.value.strip() and len(rec.value) < 100_000:
                texts.append(rec.value)
                size += len(rec.value.encode())
                if size > limit_mb * 2**20:
                    return texts
    return texts


def write_corpus(root: Path, texts: list[str], base_mb: float, scale: int) -> None:
    """`scale` JSONL files of about base_mb each; copy k of a text gets a distinct last line."""
    (root / "corpus").mkdir(parents=True)
    for k in range(scale):
        written = 0
        with open(root / "corpus" / f"part{k:03d}.jsonl", "w", encoding="utf-8") as fh:
            i = 0
            while written < base_mb * 2**20:  # cycle through the texts until the file is full
                text = texts[i % len(texts)]
                fh.write(json.dumps({"text": f"{text}\n\nCopy {k} of document {i}."}) + "\n")
                written += len(text.encode())
                i += 1


def peak_rss_mb(cmd: list[str], cwd: Path) -> float:
    env = dict(os.environ, PYTHONPATH=str(REPO), LMBUILD_NO_PROGRESS="1")
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    err = proc.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err[-3000:]}")
    return usage.ru_maxrss / 1024  # KiB on Linux


def measure(base_mb: float, scales: list[int], workdir: Path | None = None) -> dict[int, dict[str, float]]:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["common"]["workers"] = 1
    params["acquire"] = {"max_chars": 200000, "shard_mb": 64,
                         "sources": [{"name": "corpus", "kind": "jsonl", "domain": "web", "paths": ["corpus/*.jsonl"]}]}
    texts = demo_texts(min(base_mb, 8))
    results = {}
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        for scale in scales:
            root = Path(tmp) / f"x{scale}"
            root.mkdir()
            (root / "assets").mkdir()
            (root / "assets" / "lid.176.ftz").symlink_to(REPO / "assets" / "lid.176.ftz")
            (root / "params.yaml").write_text(yaml.safe_dump(params))
            write_corpus(root, texts, base_mb, scale)
            results[scale] = {"corpus_mb": sum(p.stat().st_size for p in (root / "corpus").iterdir()) / 2**20}
            for stage in ("acquire", "filter"):
                results[scale][stage] = peak_rss_mb([sys.executable, "-m", f"stages.{stage}"], root)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-mb", type=float, default=16)
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()
    results = measure(args.base_mb, args.scales)
    base = results[args.scales[0]]
    print(f"{'scale':>5} {'corpus MB':>10} {'acquire peak MB':>16} {'filter peak MB':>15}")
    for scale, r in results.items():
        print(f"{scale:>5} {r['corpus_mb']:>10.1f} {r['acquire']:>16.1f} {r['filter']:>15.1f}")
    top = results[args.scales[-1]]
    ratios = {s: top[s] / base[s] for s in ("acquire", "filter")}
    print("peak RSS ratio largest/smallest: " + ", ".join(f"{s} {v:.2f}x" for s, v in ratios.items()))
    if max(ratios.values()) > 1.3:
        raise SystemExit("peak memory grows with corpus size (> 1.3x)")


if __name__ == "__main__":
    main()
