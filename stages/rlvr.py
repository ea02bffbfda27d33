"""rlvr: reinforcement learning with verifiable rewards (GRPO-style) on the task families, from the
dpo model: G sampled completions per prompt, group-normalised advantages, clipped objective,
optional KL to the starting model.

Reads:  models/dpo/
Writes: models/rlvr/ (HF model + tokenizer), checkpoints/rlvr/ (persist; resumes at a sampling
        round), dvclive/rlvr/ (mean reward, share of groups with a correct sample, KL, response
        length, held-out accuracy over steps), metrics/rlvr.json (held-out pass@1 at start and end)
Params: common (seed), tasks (families, difficulty, rewards), rlvr (steps, batch and group sizes,
        updates per round, clip, kl, sampling, optim, schedule, eval, checkpoint)
Run:    dvc repro rlvr   (or python -m stages.rlvr)
"""

import sys
from pathlib import Path

from lmbuild.metrics import write_metrics
from lmbuild.params import ParamsError, load_params_or_exit
from lmbuild.posttrain.rlvr import run
from lmbuild.train.causal_lm import CheckpointError, DataError, ModelError, Stopped, TrainError

METRICS = Path("metrics/rlvr.json")


def main() -> None:
    params = load_params_or_exit("rlvr", shared=("tasks",))
    try:
        metrics = run(params, init_model=Path("models/dpo"), out_model=Path("models/rlvr"),
                      ckpt_dir=Path("checkpoints/rlvr"), live_dir=Path("dvclive/rlvr"))
    except Stopped as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(3) from None
    except ParamsError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None
    except (TrainError, DataError, ModelError, CheckpointError, ValueError, OSError) as exc:
        print(f"rlvr: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if _is_main():
        write_metrics(METRICS, metrics)
        print(f"rlvr: held-out task accuracy {metrics['start']['task_accuracy']:.3f} -> {metrics['task_accuracy']:.3f}, "
              f"mean reward (last window) {metrics['train'].get('reward', float('nan')):.3f} -> models/rlvr",
              file=sys.stderr)


def _is_main() -> bool:
    from accelerate import PartialState
    return PartialState().is_main_process


if __name__ == "__main__":
    main()
