"""card: the Hugging Face model card of one model stage (dvc.yaml runs it as card@<stage> after
that stage's eval): sources, data params, tokens, tokenizer, hyperparameters, lineage from
dvc.lock, the git commit, and the eval results with their standard errors in the model-index.

Reads:  dvc.lock (the chain of upstream stages and their hashes), data/raw/manifest.json,
        metrics/tokenize.json, metrics/<stage>.json, data/eval/<stage>/metrics.json
Writes: cards/<stage>/README.md (in git; copy it into models/<stage> to publish)
Params: none of its own (it quotes the params each upstream stage ran with, from dvc.lock)
Run:    dvc repro card@sft   (or python -m stages.card sft)
"""

import sys
from pathlib import Path

from lmbuild.lineage import LineageError
from lmbuild.model_card import build_card
from lmbuild.model_stages import MODEL_STAGES
from lmbuild.shards import atomic_write_text


def main() -> None:
    if len(sys.argv) != 2 or sys.argv[1] not in MODEL_STAGES:
        print(f"usage: python -m stages.card STAGE  (one of {', '.join(MODEL_STAGES)})", file=sys.stderr)
        raise SystemExit(2)
    stage = sys.argv[1]
    try:
        text = build_card(stage)
    except LineageError as exc:
        print(f"card: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    out = Path("cards") / stage / "README.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, text)
    print(f"card: {out} ({len(text):,} characters)", file=sys.stderr)


if __name__ == "__main__":
    main()
