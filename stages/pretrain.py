"""pretrain: train a causal LM (Llama or OLMo2 style) from scratch on the pretraining tokens.

Reads:  models/tokenizer/, data/tokens/pretrain/ and data/tokens/val/ (token shards, index, meta)
Writes: models/pretrain/ (HF model + tokenizer + generation_config), checkpoints/pretrain/
        (persist: latest checkpoint + fingerprint; a rerun resumes from it), dvclive/pretrain/
        (loss, val loss per domain, lr, grad norm, tokens/s, MFU per step, with tokens seen),
        metrics/pretrain.json
Params: common (seed), pretrain (model, max_tokens, seq_len, batch sizes, precision, compile,
        optim, schedule, eval, checkpoint, nan, spike)
Run:    dvc repro pretrain   (or python -m stages.pretrain; several processes:
        accelerate launch --num_processes N -m stages.pretrain)
"""

import sys
from pathlib import Path

from lmbuild.metrics import write_metrics
from lmbuild.params import load_params_or_exit
from lmbuild.train.checkpoint import CheckpointError
from lmbuild.train.causal_lm import DataError, ModelError, Stopped, TrainError, run

TOKENS = Path("data/tokens")
TOKENIZER = Path("models/tokenizer")
MODEL = Path("models/pretrain")
CHECKPOINTS = Path("checkpoints/pretrain")
LIVE = Path("dvclive/pretrain")
METRICS = Path("metrics/pretrain.json")


def main() -> None:
    params = load_params_or_exit("pretrain")
    try:
        metrics = run("pretrain", params, tokens_dir=TOKENS, train_split="pretrain", tokenizer_dir=TOKENIZER,
                      out_model=MODEL, ckpt_dir=CHECKPOINTS, live_dir=LIVE)
    except Stopped as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(3) from None
    except (TrainError, DataError, ModelError, CheckpointError) as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None
    if metrics["world_size"] == 1 or _is_main():
        write_metrics(METRICS, metrics)
        print(f"pretrain: {metrics['parameters']:,} params, {metrics['tokens_seen']:,} tokens, val loss "
              f"{metrics['val_loss']:.3f} (unigram {metrics['unigram_val_loss']:.3f}), "
              f"{metrics['tokens_per_s']:,.0f} tokens/s -> {MODEL}", file=sys.stderr)


def _is_main() -> bool:
    from accelerate import PartialState
    return PartialState().is_main_process


if __name__ == "__main__":
    main()
