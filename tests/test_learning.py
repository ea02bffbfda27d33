"""Learning tests: every post-training method improves what it optimises on a toy task with
headroom, and the same check fails once the method's sign is flipped.

Unit tests pin each loss on hand values; they cannot tell whether a whole job (data, masking,
padding, batching, reference log-probs, advantages, schedule, the trainer) still moves the model
the right way. Here each method's own entry point (sft.run, dpo.run, reward_model.run, rlvr.run,
ppo_job.run, in-process) trains one shared start model briefly, and the quantity the method
optimises is measured before and after on held-out items:

    rl (grpo, dr_grpo, dapo, gspo, rloo,   mean verifier reward of samples at the training
        reinforce_pp, ppo)                 temperature on the held-out problems
    dpo family (every dpo.loss)            accuracy of the loss's own implicit reward on held-out
                                           pairs (what the job reports as val.reward_accuracy)
    reward model                           pair accuracy on held-out pairs
    sft                                    greedy accuracy on the held-out problems

Each check is one function, called twice: it must pass for the method as it is and fail for its
sign-flipped twin. The flips are made here, not in the library: rl's verifier reward is negated
inside the job (so every advantage flips); the dpo family and the reward model train on pairs
with chosen and rejected swapped (the held-out pairs stay the same); sft trains on answers
shuffled between problems (random labels, Zhang et al. 2017). A method that learns nothing, or
learns backwards, fails the first test; a check that would pass whatever the training did fails
the second.

The toy task is count (6 letters of {a, b}) and sort (2 numbers of 0..9): their test splits hold
61 problems, which nothing here trains on. The start model is a 64-wide, 2-layer Llama after
~125 sft steps: greedy accuracy ~0.55-0.65 over seeds, mean reward of samples at rl's
temperature ~0.1-0.15, so each metric can move either way. The preference pairs are count problems with
a consistent near miss (the right count against one or two too many).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from lmbuild.params import validate_section
from train_data import tiny_chat_llama

pytestmark = pytest.mark.slow

SEED = 0
FAMILIES = {"count": {"length": 6, "alphabet": 2}, "sort": {"length": 2, "max_value": 9}}
# test_examples above the test splits' sizes (30 and 31): every held-out problem is scored.
# max_new_tokens 8: an answer is at most 6 tokens with its end token, which dapo's overlong
# shaping (cache = max_new_tokens / 5 = 2 tokens) leaves unpunished
TASKS = {"families": list(FAMILIES), "difficulty": FAMILIES, "test_examples": 100, "max_new_tokens": 8,
         "format_weight": 0.1}
# what every trainer section shares: fp32; one log point, evaluation and checkpoint (the last
# step's); a given peak (MFU goes unread here) instead of the 0.3 s matmul benchmark of each job
QUIET = {"precision": "fp32", "log_every": 1000, "eval": {"every_steps": 1000}, "checkpoint": {"every_steps": 1000},
         "peak_tflops": 1.0}


def section(name: str, **over) -> dict:
    """A validated params section: QUIET, then `over` (nested dicts merged one level deep)."""
    values = json.loads(json.dumps(QUIET))
    for k, v in over.items():
        values[k] = {**values[k], **v} if isinstance(v, dict) and isinstance(values.get(k), dict) else v
    return validate_section(name, values)


def run_dirs(out: Path) -> dict:
    return {"out_model": out / "model", "ckpt_dir": out / "ckpt", "live_dir": out / "live"}


@pytest.fixture(scope="module", autouse=True)
def quiet_single_thread():
    """One intra-op thread: these models are so small that a second thread only adds sync cost,
    and on a loaded 2-core machine OpenMP threads waiting for each other made runs ~4x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LMBUILD_NO_PROGRESS", "1")
        yield
    torch.set_num_threads(threads)


def make_start(root: Path, seed: int = SEED) -> Path:
    """The shared start model: a random 64-wide Llama after ~125 steps of the sft job on the toy
    task's demonstrations (lr 5e-3: the tiny model learns them in a few hundred steps; stopped
    half way, so every metric has headroom both ways)."""
    from lmbuild.posttrain import sft
    # the digits as tokens of their own (" 7" is two tokens in the synthetic documents' BPE)
    tiny_chat_llama(root / "tok", root / "random", width=64, seed=seed, texts=(" ".join("0123456789"),) * 3)
    params = {"common": {"seed": seed}, "tasks": validate_section("tasks", TASKS), "sft": section(
        "sft", sources=[{"name": "tasks", "type": "tasks", "count": 2000}], epochs=2, seq_len=64, batch_size=32,
        micro_batch_size=32, optim={"lr": 0.005}, schedule={"kind": "constant", "warmup_steps": 0},
        eval={"batch_size": 64})}
    sft.run(params, init_model=root / "random", data_out=root / "sft_data", **run_dirs(root / "start"))
    return root / "start" / "model"


@pytest.fixture(scope="module")
def start(tmp_path_factory) -> Path:
    return make_start(tmp_path_factory.mktemp("learning"))


# --- rl: the policy-gradient family and ppo --------------------------------------------------------

RL_ALGORITHMS = ["grpo", "dr_grpo", "dapo", "gspo", "rloo", "reinforce_pp", "ppo"]
# 10 rounds of 32 prompts x 8 samples at temperature 2, where the start model's samples earn a
# mean reward of ~0.1-0.15 while its greedy answers are right ~60% of the time: room to sharpen,
# or to unlearn. (At temperature 1.5 and 16 prompts a round, some algorithms gained as little as
# 0.02 on some start models: too close to the noise of 61 problems x 8 samples.)
RL = {"steps": 10, "batch_size": 32, "micro_batch_size": 32, "group_size": 8, "prompts_per_family": 200,
      "temperature": 2.0, "optim": {"lr": 0.001}, "eval": {"batch_size": 512, "samples": 8}}
RL_MIN_GAIN = 0.05


def rl_train(start: Path, algorithm: str, out: Path, seed: int = SEED) -> dict:
    """One rlvr run (ppo through its own job, as stages/rlvr.py dispatches it); its metrics."""
    from lmbuild.posttrain import ppo_job, rlvr
    params = {"common": {"seed": seed}, "tasks": validate_section("tasks", TASKS),
              "rlvr": section("rlvr", algorithm=algorithm, seed=seed, **RL)}
    # ppo's new value head is drawn from torch's global generator, which the job does not seed:
    # seeded here, so the result does not depend on which tests ran before
    torch.manual_seed(seed)
    if algorithm == "ppo":
        return ppo_job.run(params, init_model=start, scorer=ppo_job.make_scorer(params)[0], **run_dirs(out))
    return rlvr.run(params, init_model=start, **run_dirs(out))


def rl_improves(m: dict) -> bool:
    """The mean held-out reward of samples at the training temperature rose by RL_MIN_GAIN."""
    return m["sampled_reward"] - m["start"]["sampled_reward"] >= RL_MIN_GAIN


def negate_verifier(monkeypatch) -> None:
    """Every reward the job computes (RewardMix.round, which the policy-gradient job and ppo's
    scorer both call) becomes minus the verifier's: the advantages flip sign. Held-out scoring
    does not go through it and stays the true reward."""
    from lmbuild.posttrain import rewards
    true_reward = rewards.task_reward
    monkeypatch.setattr(rewards, "task_reward", lambda tp, example, completion: -true_reward(tp, example, completion))


@pytest.mark.parametrize("algorithm", RL_ALGORITHMS)
def test_rl_raises_the_heldout_reward(start, tmp_path, algorithm):
    m = rl_train(start, algorithm, tmp_path)
    assert rl_improves(m), (m["start"]["sampled_reward"], m["sampled_reward"])


@pytest.mark.parametrize("algorithm", RL_ALGORITHMS)
def test_rl_on_the_negated_reward_does_not(start, tmp_path, monkeypatch, algorithm):
    negate_verifier(monkeypatch)
    m = rl_train(start, algorithm, tmp_path)
    assert m["train"]["reward"] < 0  # the flip reached the job
    assert not rl_improves(m), (m["start"]["sampled_reward"], m["sampled_reward"])


# --- preference pairs: the dpo family and the reward model ----------------------------------------

def overcounts(split: str, seed: int) -> list[tuple[object, str]]:
    """(count problem, wrong answer) for every distinct count problem of `split`, twice: with the
    count one too high and two too high. A consistent, well-formed near miss, so each direction
    of the preference is as learnable as the other; and a likelihood term trained on it (cpo,
    orpo, rrhf, the swapped pairs) teaches a wrong answer, not an almost right one."""
    from lmbuild.tasks import generate, split_size, validate_difficulty
    d = validate_difficulty("count", FAMILIES["count"])
    problems = generate("count", split, split_size("count", split, d), seed, d)
    return [(ex, f"Answer: {int(ex.answer) + k}") for ex in problems for k in (1, 2)]


def pair_rows(tok, problems: list[tuple[object, str]], split: str, swap: bool) -> list[dict]:
    """Pair rows as dpo_pairs writes them (encode_pair's token ids), chosen = the right answer
    unless `swap`."""
    from lmbuild.posttrain.pairs import encode_pair
    rows = []
    for ex, wrong in problems:
        rec = {"prompt": [{"role": "user", "content": ex.prompt}], "chosen": ex.solution, "rejected": wrong,
               "split": split}
        if swap:
            rec["chosen"], rec["rejected"] = wrong, ex.solution
        rows.append({**rec, **encode_pair(tok, rec, 48)})
    return rows


def pair_dirs(start: Path, root: Path, seed: int) -> dict[str, Path]:
    """Two pair sets in dpo_pairs' format, with its reference log-probs (link_mismatched and
    reference_logps on the start model, as dpo_pairs prepares it): training pairs on train-split
    problems and held-out pairs on test-split problems, which no model here has seen. "true":
    chosen = the right answer; "swapped": the training pairs reversed, the held-out pairs the
    same as in "true"."""
    from lmbuild.lm.chat import chat_ids
    from lmbuild.lm.start_model import start_model, start_tokenizer
    from lmbuild.posttrain.pairs import link_mismatched, reference_logps
    tok, info = start_tokenizer(start, "dpo.init_model")
    pad_id = chat_ids(tok)[1]
    model = start_model(start, tok, info, "sdpa")
    train, test = overcounts("train", seed), overcounts("test", seed)
    val = pair_rows(tok, test, "val", swap=False)
    link_mismatched(val)
    reference_logps(model, val, pad_id, 256)
    out = {}
    for name in ("true", "swapped"):
        rows = pair_rows(tok, train, "train", swap=name == "swapped")
        link_mismatched(rows)
        reference_logps(model, rows, pad_id, 256)
        (root / name).mkdir()
        (root / name / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows + val))
        out[name] = root / name
    return out


@pytest.fixture(scope="module")
def pairs(start, tmp_path_factory) -> dict[str, Path]:
    return pair_dirs(start, tmp_path_factory.mktemp("pairs"), SEED)


def heldout_rows(pairs_dir: Path) -> list[dict]:
    rows = [json.loads(x) for x in (pairs_dir / "pairs.jsonl").read_text().splitlines()]
    return [r for r in rows if r["split"] == "val"]


# --- the dpo family

# rpo_alpha 0 and beta None: each loss as its paper has it. lr 6e-4 over 3 epochs (~37 steps)
DPO = {"batch_size": 16, "micro_batch_size": 16, "epochs": 3, "rpo_alpha": 0.0, "beta": None,
       "optim": {"lr": 0.0006}, "eval": {"batch_size": 128}}
DPO_MIN_GAIN = 0.05


def dpo_train(start: Path, pairs_dir: Path, loss: str, out: Path, seed: int = SEED) -> dict:
    from lmbuild.posttrain.dpo import run
    params = {"common": {"seed": seed}, "tasks": validate_section("tasks", TASKS),
              "dpo": section("dpo", loss=loss, seed=seed, **DPO)}
    return run(params, init_model=start, pairs_dir=pairs_dir, rounds_dir=out / "rounds", **run_dirs(out))


def implicit_accuracy_before(pairs_dir: Path, loss: str) -> float:
    """The held-out accuracy of the loss's own reward (chosen_reward > rejected_reward, a tie
    counted half) for the start model, by preference_loss on the cached reference log-probs (the
    reference is the start model, so they are its log-probs too). The implicit reward of the
    losses with a reference, beta x log(pi / pi_ref), is 0 for every completion here: 0.5."""
    from lmbuild.posttrain.dpo import loss_settings
    from lmbuild.posttrain.preference_losses import PairLogps, preference_loss
    rows = heldout_rows(pairs_dir)

    def col(key, f=float):
        return torch.tensor([f(r[key]) for r in rows], dtype=torch.float32)
    lp = PairLogps(chosen=col("ref_chosen"), rejected=col("ref_rejected"), chosen_len=col("chosen_ids", len),
                   rejected_len=col("rejected_ids", len), ref_chosen=col("ref_chosen"),
                   ref_rejected=col("ref_rejected"), kl_policy=col("ref_kl"), kl_ref=col("ref_kl"))
    out = preference_loss(loss, lp, **loss_settings(section("dpo", loss=loss, **DPO)))
    d = out.chosen_reward - out.rejected_reward
    return float(((d > 0).float() + 0.5 * (d == 0).float()).mean())


def dpo_improves(before: float, m: dict) -> bool:
    """The held-out accuracy of the loss's implicit reward (what the dpo job reports as
    val.reward_accuracy) rose by DPO_MIN_GAIN."""
    return m["val"]["reward_accuracy"] - before >= DPO_MIN_GAIN


def _losses() -> list[str]:
    from lmbuild.posttrain.preference_losses import LOSSES
    return list(LOSSES)


@pytest.mark.parametrize("loss", _losses())
def test_preference_loss_learns_the_heldout_preferences(start, pairs, tmp_path, loss):
    before = implicit_accuracy_before(pairs["true"], loss)
    m = dpo_train(start, pairs["true"], loss, tmp_path)
    assert dpo_improves(before, m), (before, m["val"]["reward_accuracy"])


@pytest.mark.parametrize("loss", _losses())
def test_preference_loss_on_swapped_pairs_does_not(start, pairs, tmp_path, loss):
    before = implicit_accuracy_before(pairs["true"], loss)
    m = dpo_train(start, pairs["swapped"], loss, tmp_path)
    assert not dpo_improves(before, m), (before, m["val"]["reward_accuracy"])


# --- the reward model

# ~49 steps at lr 1e-3. The untrained model's accuracy is that of a random score head, which on
# pairs this regular sits anywhere from near 0 to near 1 (0.07-0.47 over the seeds tried): the
# check is against it, as the job itself starts from it
RM = {"batch_size": 16, "micro_batch_size": 16, "epochs": 4, "optim": {"lr": 0.001}, "eval": {"batch_size": 64}}
RM_MIN_GAIN = 0.15


def rm_train(start: Path, pairs_dir: Path, out: Path, seed: int = SEED) -> dict:
    from lmbuild.posttrain.reward_model import run
    params = {"common": {"seed": seed}, "reward_model": section("reward_model", seed=seed, **RM)}
    return run(params, init_model=start, pairs_dir=pairs_dir, **run_dirs(out))


def rm_accuracy_before(start: Path, pairs_dir: Path, seed: int = SEED) -> float:
    """Held-out pair accuracy of the untrained reward model: the job's score head, initialised as
    the job initialises it (torch.manual_seed(seed), then load_score_model)."""
    from transformers import AutoTokenizer
    from lmbuild.lm.chat import chat_ids
    from lmbuild.lm.reward import score_ids
    from lmbuild.posttrain.reward_model import load_score_model
    rows = heldout_rows(pairs_dir)
    torch.manual_seed(seed)
    model = load_score_model(start, chat_ids(AutoTokenizer.from_pretrained(start))[1], "sdpa").eval()
    with torch.no_grad():
        r = score_ids(model, [(x["prompt_ids"], x["chosen_ids"]) for x in rows]
                      + [(x["prompt_ids"], x["rejected_ids"]) for x in rows], 64)
    margins = (r[:len(rows)] - r[len(rows):]).tolist()
    return sum(1.0 if d > 0 else 0.5 if d == 0 else 0.0 for d in margins) / len(margins)


def rm_improves(before: float, m: dict) -> bool:
    """Held-out pair accuracy rose by RM_MIN_GAIN."""
    return m["accuracy"] - before >= RM_MIN_GAIN


def test_reward_model_learns_the_heldout_preferences(start, pairs, tmp_path):
    before = rm_accuracy_before(start, pairs["true"])
    m = rm_train(start, pairs["true"], tmp_path)
    assert rm_improves(before, m), (before, m["accuracy"])


def test_reward_model_on_swapped_pairs_does_not(start, pairs, tmp_path):
    before = rm_accuracy_before(start, pairs["true"])
    m = rm_train(start, pairs["swapped"], tmp_path)
    assert not rm_improves(before, m), (before, m["accuracy"])


# --- sft ---------------------------------------------------------------------------------------------

SFT = {"epochs": 4, "seq_len": 64, "batch_size": 16, "micro_batch_size": 16, "optim": {"lr": 0.001},
       "schedule": {"kind": "constant", "warmup_steps": 5}, "eval": {"batch_size": 64}}
SFT_MIN_GAIN = 0.05


def demonstrations(seed: int, shuffled: bool) -> list[dict]:
    """A chat demonstration for every train problem: its own answer, or (shuffled) the answer of
    another problem of the family (Zhang et al. 2017's random labels)."""
    from lmbuild.tasks import generate, split_size, validate_difficulty
    rng = random.Random(seed)
    rows = []
    for family, diff in FAMILIES.items():
        d = validate_difficulty(family, diff)
        exs = generate(family, "train", split_size(family, "train", d), seed, d)
        for ex in exs:
            answer = rng.choice([e for e in exs if e.answer != ex.answer]).solution if shuffled else ex.solution
            rows.append({"messages": [{"role": "user", "content": ex.prompt},
                                      {"role": "assistant", "content": answer}]})
    return rows


def sft_train(start: Path, root: Path, shuffled: bool, seed: int = SEED) -> dict:
    """The sft job on a chat file written here (`demonstrations`), every row 4 times per epoch."""
    from lmbuild.posttrain import sft
    rows = demonstrations(seed, shuffled)
    (root / "demos.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    params = {"common": {"seed": seed}, "tasks": validate_section("tasks", TASKS), "sft": section(
        "sft", seed=seed, sources=[{"name": "demos", "type": "file", "path": "demos.jsonl", "val_fraction": 0.0,
                                    "count": 4 * len(rows)}], **SFT)}
    return sft.run(params, init_model=start, data_out=root / "data", root=root, **run_dirs(root / "run"))


def sft_improves(m: dict) -> bool:
    """Greedy accuracy on the held-out problems rose by SFT_MIN_GAIN."""
    return m["task_accuracy"] - m["start"]["task_accuracy"] >= SFT_MIN_GAIN


def test_sft_raises_heldout_accuracy(start, tmp_path):
    m = sft_train(start, tmp_path, shuffled=False)
    assert sft_improves(m), (m["start"]["task_accuracy"], m["task_accuracy"])


def test_sft_on_shuffled_answers_does_not(start, tmp_path):
    m = sft_train(start, tmp_path, shuffled=True)
    assert not sft_improves(m), (m["start"]["task_accuracy"], m["task_accuracy"])
