"""dpo: preference optimisation of the SFT model with the loss dpo.loss selects (dpo, ipo, hinge,
cpo, orpo, rdpo, simpo, kto, rrhf), on the pairs and cached reference log-probs of dpo_pairs.

Reads:  models/sft/, data/dpo/pairs.jsonl
Writes: models/dpo/ (HF model + tokenizer), checkpoints/dpo/ (persist; resumes), dvclive/dpo/
        (loss, reward accuracy and margin on train and held-out pairs, task accuracy),
        metrics/dpo.json
Params: common (seed), tasks (held-out task accuracy), dpo (loss, beta, loss_params, epochs,
        batch sizes, precision, optim, schedule, eval, checkpoint, nan, spike)
Run:    dvc repro dpo   (or python -m stages.dpo; several processes:
        accelerate launch --num_processes N -m stages.dpo)
"""

import sys
from pathlib import Path

from lmbuild.metrics import write_metrics
from lmbuild.params import ParamsError, load_params_or_exit
from lmbuild.posttrain.dpo import run
from lmbuild.train.causal_lm import CheckpointError, DataError, ModelError, Stopped, TrainError

METRICS = Path("metrics/dpo.json")


def main() -> None:
    params = load_params_or_exit("dpo", shared=("tasks",))
    try:
        metrics = run(params, init_model=Path("models/sft"), pairs_dir=Path("data/dpo"), out_model=Path("models/dpo"),
                      ckpt_dir=Path("checkpoints/dpo"), live_dir=Path("dvclive/dpo"))
    except Stopped as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(3) from None
    except ParamsError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None
    except (TrainError, DataError, ModelError, CheckpointError, ValueError, OSError) as exc:
        print(f"dpo: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if _is_main():
        write_metrics(METRICS, metrics)
        print(f"dpo ({params['dpo']['loss']}): {metrics['pairs_train']:,} pairs, held-out reward accuracy "
              f"{metrics.get('val', {}).get('reward_accuracy', float('nan')):.3f}, task accuracy "
              f"{metrics['start']['task_accuracy']:.3f} -> {metrics['task_accuracy']:.3f} -> models/dpo", file=sys.stderr)


def _is_main() -> bool:
    from accelerate import PartialState
    return PartialState().is_main_process


if __name__ == "__main__":
    main()
