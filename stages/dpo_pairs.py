"""dpo_pairs: the preference pairs dpo trains on, with the reference model's log-probs cached.

Reads:  dpo.init_model (models/sft/ by default: sampling policy and reference model, the model
        dpo starts from), files named in dpo.pairs.files
Writes: data/dpo/pairs.jsonl (split, prompt, chosen, rejected, scores, token ids, reference
        log-probs), data/dpo/rejected.jsonl (unusable file rows with file:line and reason),
        metrics/dpo_pairs.json
Params: common (seed), tasks (families, difficulty, rewards), dpo.init_model and dpo.pairs only: a
        change of the loss or beta reruns dpo but reuses these pairs and log-probs
Run:    dvc repro dpo_pairs   (or python -m stages.dpo_pairs)
"""

import sys
from pathlib import Path

from lmbuild.metrics import write_metrics
from lmbuild.params import load_params_or_exit, stage_errors
from lmbuild.posttrain.dpo import build_pairs

METRICS = Path("metrics/dpo_pairs.json")


def main() -> None:
    params = load_params_or_exit("dpo", shared=("tasks",))
    with stage_errors("dpo_pairs", ValueError, OSError):
        metrics = build_pairs(params, ref_model=Path(params["dpo"]["init_model"]), out_dir=Path("data/dpo"))
    write_metrics(METRICS, metrics)
    print(f"dpo_pairs: {metrics['pairs_train']:,} train and {metrics['pairs_val']:,} held-out pairs -> data/dpo",
          file=sys.stderr)


if __name__ == "__main__":
    main()
