"""pretrain: train a causal LM (Llama or OLMo2 style) from scratch on the pretraining tokens.

Reads:  models/tokenizer/, data/tokens/pretrain/ and data/tokens/val/ (token shards, index, meta)
Writes: models/pretrain/ (HF model + tokenizer + generation_config), checkpoints/pretrain/
        (persist: latest checkpoint + fingerprint; a rerun resumes from it), dvclive/pretrain/
        (loss, val loss per domain, lr, grad norm, tokens/s, MFU per step, with tokens seen),
        metrics/pretrain.json
Params: common (seed), pretrain (model, max_tokens, seq_len, batch sizes, precision, compile,
        optim, schedule, eval, checkpoint, nan, spike, fim)
Run:    dvc repro pretrain   (or python -m stages.pretrain; several processes:
        accelerate launch --num_processes N -m stages.pretrain)
"""

from pathlib import Path

from lmbuild.params import load_params_or_exit
from lmbuild.train.causal_lm import run
from lmbuild.train.entry import run_training_stage

TOKENS = Path("data/tokens")
TOKENIZER = Path("models/tokenizer")
MODEL = Path("models/pretrain")
CHECKPOINTS = Path("checkpoints/pretrain")
LIVE = Path("dvclive/pretrain")
METRICS = Path("metrics/pretrain.json")


def main() -> None:
    params = load_params_or_exit("pretrain")
    run_training_stage("pretrain", lambda: run(
        "pretrain", params, tokens_dir=TOKENS, train_split="pretrain", tokenizer_dir=TOKENIZER, out_model=MODEL,
        ckpt_dir=CHECKPOINTS, live_dir=LIVE), METRICS, lambda m: (
        f"pretrain: {m['parameters']:,} params, {m['tokens_seen']:,} tokens, val loss {m['val_loss']:.3f} "
        f"(unigram {m['unigram_val_loss']:.3f}), {m['tokens_per_s']:,.0f} tokens/s -> {MODEL}"))


if __name__ == "__main__":
    main()
