"""rephrase: rephrased synthetic data (WRAP, Maini et al. 2024). A local causal LM rewrites a seeded
sample of documents in named styles; the rewrites are a new source for the filter stage.

Reads:  rephrase.model (a local HF causal LM; models/anneal on the demo), data/dedup (the
        documents to rewrite), data/mix/val (held-out documents, never rewritten)
Writes: studies/synthetic/rephrased/<source_prefix>_<style>/part-NNNN.parquet (raw document
        shards plus parent_id and style), studies/synthetic/rephrased/lineage.json (model, its
        weights' digest, prompts, sampling), metrics/rephrase.json (per style: copy rate and
        length ratio with standard errors; tokens/s)
Params: common (seed), rephrase
Run:    dvc repro studies/dvc.yaml:rephrase   (or python -m stages.rephrase); the data ablation
        study's with_rephrased recipe then mixes it in (dvc repro studies/dvc.yaml:ablation_fit)
"""

import sys
from pathlib import Path

from lmbuild.metrics import write_metrics
from lmbuild.params import load_params_or_exit, stage_errors
from lmbuild.rephrase.run import RephraseError, rephrase
from lmbuild.shards import ShardError

OUT, METRICS = Path("studies/synthetic/rephrased"), Path("metrics/rephrase.json")


def main() -> None:
    params = load_params_or_exit("rephrase")
    with stage_errors("rephrase", RephraseError, ShardError, OSError):
        m = rephrase(params, Path("data/dedup"), Path("data/mix/val"), OUT)
    write_metrics(METRICS, m)
    styles = ", ".join(f"{s}: copy rate {v['copy_rate']:.3f}, length x{v['length_ratio']:.2f}"
                       for s, v in m["styles"].items())
    print(f"rephrase: {m['documents']} documents, {m['generated_tokens']:,} tokens at {m['tokens_per_s']:.0f}/s "
          f"({styles}) -> {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
