"""rlvr: reinforcement learning with verifiable rewards on the task families, from the dpo model:
G sampled completions per prompt, advantages and a clipped objective by `rlvr.algorithm` (GRPO,
Dr. GRPO, DAPO, GSPO, RLOO, REINFORCE++), optional KL to the starting model.

Reads:  rlvr.init_model (models/dpo/ by default)
Writes: models/rlvr/ (HF model + tokenizer), checkpoints/rlvr/ (persist; resumes at a sampling
        round), dvclive/rlvr/ (mean reward, share of groups with a correct sample, KL, response
        length, held-out accuracy over steps), metrics/rlvr.json (held-out pass@1 at start and end)
Params: common (seed), tasks (families, difficulty, rewards), rlvr (init_model, algorithm, steps, batch and group sizes,
        updates per round, clip, kl, sampling, optim, schedule, eval, checkpoint)
Run:    dvc repro rlvr   (or python -m stages.rlvr)
"""

from pathlib import Path

from lmbuild.params import load_params_or_exit
from lmbuild.posttrain import ppo_job
from lmbuild.posttrain.rlvr import run
from lmbuild.train.entry import run_training_stage

METRICS = Path("metrics/rlvr.json")


def main() -> None:
    params = load_params_or_exit("rlvr", shared=("tasks",))
    init, outs = Path(params["rlvr"]["init_model"]), dict(out_model=Path("models/rlvr"), ckpt_dir=Path("checkpoints/rlvr"),
                                           live_dir=Path("dvclive/rlvr"))
    if params["rlvr"]["algorithm"] == "ppo":
        def work():
            scorer, rm = ppo_job.make_scorer(params)
            return ppo_job.run(params, init_model=init, scorer=scorer, reward_model=rm, **outs)
    else:
        work = lambda: run(params, init_model=init, **outs)
    run_training_stage("rlvr", work, METRICS, lambda m: (
        f"rlvr: held-out task accuracy {m['start']['task_accuracy']:.3f} -> {m['task_accuracy']:.3f}, "
        f"mean reward (last window) {m['train'].get('reward', float('nan')):.3f} -> models/rlvr"))


if __name__ == "__main__":
    main()
