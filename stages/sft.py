"""sft: supervised fine-tuning of the annealed model on a chat mixture (task demonstrations and
your chat files), loss on assistant tokens only, short examples packed into full rows.

Reads:  sft.init_model (models/anneal/ by default; any HF causal-LM directory: a tokenizer without
        lmbuild's chat template gets it), files named in sft.sources
Writes: models/sft/ (HF model + tokenizer; generation stops at <|im_end|>), data/sft/ (the mixture
        as trained, rejected rows with file:line and reason), checkpoints/sft/ (persist; resumes),
        dvclive/sft/ (loss, lr, grad norm, tokens/s, val loss, held-out task accuracy),
        metrics/sft.json
Params: common (seed), tasks (families, difficulty, held-out size), sft (init_model, lora, sources, epochs,
        seq_len, batch sizes, precision, optim, schedule, eval, checkpoint, nan, spike)
Run:    dvc repro sft   (or python -m stages.sft; several processes:
        accelerate launch --num_processes N -m stages.sft)
"""

from pathlib import Path

from lmbuild.params import load_params_or_exit
from lmbuild.posttrain.sft import run
from lmbuild.train.entry import run_training_stage

METRICS = Path("metrics/sft.json")


def main() -> None:
    params = load_params_or_exit("sft", shared=("tasks",))
    run_training_stage("sft", lambda: run(
        params, init_model=Path(params["sft"]["init_model"]), out_model=Path("models/sft"), data_out=Path("data/sft"),
        ckpt_dir=Path("checkpoints/sft"), live_dir=Path("dvclive/sft")), METRICS, lambda m: (
        f"sft: {m['examples']:,} examples in {m['packed_rows']:,} rows, val loss {m['val_loss']:.3f}, held-out "
        f"task accuracy {m['start']['task_accuracy']:.3f} -> {m['task_accuracy']:.3f} -> models/sft"))


if __name__ == "__main__":
    main()
