"""sft: supervised fine-tuning of the annealed model on a chat mixture (task demonstrations and
your chat files), loss on assistant tokens only, short examples packed into full rows.

Reads:  models/anneal/ (model + tokenizer with the chat template), files named in sft.sources
Writes: models/sft/ (HF model + tokenizer; generation stops at <|im_end|>), data/sft/ (the mixture
        as trained, rejected rows with file:line and reason), checkpoints/sft/ (persist; resumes),
        dvclive/sft/ (loss, lr, grad norm, tokens/s, val loss, held-out task accuracy),
        metrics/sft.json
Params: common (seed), tasks (families, difficulty, held-out size), sft (sources, epochs,
        seq_len, batch sizes, precision, optim, schedule, eval, checkpoint, nan, spike)
Run:    dvc repro sft   (or python -m stages.sft; several processes:
        accelerate launch --num_processes N -m stages.sft)
"""

import sys
from pathlib import Path

from lmbuild.metrics import write_metrics
from lmbuild.params import ParamsError, load_params_or_exit
from lmbuild.posttrain.sft import run
from lmbuild.train.causal_lm import CheckpointError, DataError, ModelError, Stopped, TrainError

METRICS = Path("metrics/sft.json")


def main() -> None:
    params = load_params_or_exit("sft", shared=("tasks",))
    try:
        metrics = run(params, init_model=Path("models/anneal"), out_model=Path("models/sft"),
                      data_out=Path("data/sft"), ckpt_dir=Path("checkpoints/sft"), live_dir=Path("dvclive/sft"))
    except Stopped as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(3) from None
    except ParamsError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None
    except (TrainError, DataError, ModelError, CheckpointError, ValueError, OSError) as exc:
        print(f"sft: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if _is_main():
        write_metrics(METRICS, metrics)
        print(f"sft: {metrics['examples']:,} examples in {metrics['packed_rows']:,} rows, val loss "
              f"{metrics['val_loss']:.3f}, held-out task accuracy {metrics['start']['task_accuracy']:.3f} -> "
              f"{metrics['task_accuracy']:.3f} -> models/sft", file=sys.stderr)


def _is_main() -> bool:
    from accelerate import PartialState
    return PartialState().is_main_process


if __name__ == "__main__":
    main()
