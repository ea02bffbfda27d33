"""dpo: preference optimisation of the SFT model with the loss dpo.loss selects (dpo, ipo, hinge,
cpo, orpo, rdpo, simpo, kto, rrhf), on the pairs and cached reference log-probs of dpo_pairs.

Reads:  dpo.init_model (models/sft/ by default; the model dpo_pairs used as reference),
        data/dpo/pairs.jsonl
Writes: models/dpo/ (HF model + tokenizer), data/dpo_rounds/ (the pairs of rounds 2.. of iterative
        DPO, dpo.rounds > 1, and rounds.json), checkpoints/dpo/ (persist; resumes), dvclive/dpo/
        (loss, reward accuracy and margin on train and held-out pairs, task accuracy),
        metrics/dpo.json
Params: common (seed), tasks (held-out task accuracy), dpo (init_model, lora, loss, beta, loss_params, epochs,
        batch sizes, precision, optim, schedule, eval, checkpoint, nan, spike)
Run:    dvc repro dpo   (or python -m stages.dpo; several processes:
        accelerate launch --num_processes N -m stages.dpo)
"""

from pathlib import Path

from lmbuild.params import load_params_or_exit
from lmbuild.posttrain.dpo import run
from lmbuild.train.entry import run_training_stage

METRICS = Path("metrics/dpo.json")


def main() -> None:
    params = load_params_or_exit("dpo", shared=("tasks",))
    run_training_stage("dpo", lambda: run(
        params, init_model=Path(params["dpo"]["init_model"]), pairs_dir=Path("data/dpo"), out_model=Path("models/dpo"),
        ckpt_dir=Path("checkpoints/dpo"), live_dir=Path("dvclive/dpo"),
        rounds_dir=Path("data/dpo_rounds")), METRICS, lambda m: (
        f"dpo ({params['dpo']['loss']}): {m['pairs_train']:,} pairs, held-out reward accuracy "
        f"{m.get('val', {}).get('reward_accuracy', float('nan')):.3f}, task accuracy "
        f"{m['start']['task_accuracy']:.3f} -> {m['task_accuracy']:.3f} -> models/dpo"))


if __name__ == "__main__":
    main()
