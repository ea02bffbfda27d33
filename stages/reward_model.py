"""reward_model: a Bradley-Terry reward model (the SFT model with a one-output score head) trained
on the dpo_pairs preference pairs.

Reads:  models/sft/, data/dpo/pairs.jsonl (the pairs and their train/val split)
Writes: models/reward_model/ (HF AutoModelForSequenceClassification + tokenizer),
        checkpoints/reward_model/ (persist; resumes), dvclive/reward_model/ (loss, pair accuracy
        and margin on train and held-out pairs), metrics/reward_model.json
Params: common (seed), reward_model (center_coef, epochs, batch sizes, precision, optim,
        schedule, eval, checkpoint, nan, spike)
Run:    dvc repro reward_model   (or python -m stages.reward_model; several processes:
        accelerate launch --num_processes N -m stages.reward_model)
"""

from pathlib import Path

from lmbuild.params import load_params_or_exit
from lmbuild.posttrain.reward_model import run
from lmbuild.train.entry import run_training_stage

METRICS = Path("metrics/reward_model.json")


def main() -> None:
    params = load_params_or_exit("reward_model")
    run_training_stage("reward_model", lambda: run(
        params, init_model=Path("models/sft"), pairs_dir=Path("data/dpo"), out_model=Path("models/reward_model"),
        ckpt_dir=Path("checkpoints/reward_model"), live_dir=Path("dvclive/reward_model")), METRICS, lambda m: (
        f"reward_model: {m['pairs_train']:,} pairs, held-out pair accuracy "
        f"{m.get('accuracy', float('nan')):.3f} +- {m.get('accuracy_stderr', float('nan')):.3f} "
        f"({m['pairs_val']:,} pairs) -> models/reward_model"))


if __name__ == "__main__":
    main()
