"""anneal: continue the pretrained model on the high-quality anneal mix, lr decaying linearly to zero
(the late-training curriculum of OLMo 2 and Llama 3).

Reads:  models/pretrain/, models/tokenizer/, data/tokens/anneal/ and data/tokens/val/ (token shards, index, meta)
Writes: models/anneal/ (HF model + tokenizer + generation_config), checkpoints/anneal/
        (persist: latest checkpoint + fingerprint; a rerun resumes from it), dvclive/anneal/
        (loss, val loss per domain, lr, grad norm, tokens/s, MFU per step, with tokens seen),
        metrics/anneal.json
Params: common (seed), anneal (max_tokens, seq_len, batch sizes, precision, compile,
        optim, schedule, eval, checkpoint, nan, spike, fim)
Run:    dvc repro anneal   (or python -m stages.anneal; several processes:
        accelerate launch --num_processes N -m stages.anneal)
"""

from pathlib import Path

from lmbuild.params import load_params_or_exit
from lmbuild.train.causal_lm import run
from lmbuild.train.entry import run_training_stage

TOKENS = Path("data/tokens")
TOKENIZER = Path("models/tokenizer")
INIT = Path("models/pretrain")
MODEL = Path("models/anneal")
CHECKPOINTS = Path("checkpoints/anneal")
LIVE = Path("dvclive/anneal")
METRICS = Path("metrics/anneal.json")


def main() -> None:
    params = load_params_or_exit("anneal")
    run_training_stage("anneal", lambda: run(
        "anneal", params, tokens_dir=TOKENS, train_split="anneal", tokenizer_dir=TOKENIZER, out_model=MODEL,
        ckpt_dir=CHECKPOINTS, live_dir=LIVE, init_model=INIT), METRICS, lambda m: (
        f"anneal: {m['parameters']:,} params, {m['tokens_seen']:,} tokens, val loss {m['val_loss']:.3f} "
        f"(unigram {m['unigram_val_loss']:.3f}), {m['tokens_per_s']:,.0f} tokens/s -> {MODEL}"))


if __name__ == "__main__":
    main()
