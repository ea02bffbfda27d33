"""GPU check: the training stages at the ~124M-parameter preset of docs/scaling-up.md ("One GPU") on
one NVIDIA GPU with no network, in a few minutes, and one JSON of what was measured and skipped.

Each step runs the real stage (`python -m stages.<name>`) in a scratch workspace (lmbuild.workspace)
under .cache/gpu_check/, with params.yaml's sections overridden for a short run:
  1. tokenize: the demo mixes (data/mix, data/decontam) re-encoded with a --vocab-token BPE, so
     that the preset has about its documented size (--vocab 0: the repository's data/tokens and
     models/tokenizer as they are, 4,096 tokens)
  2. pretrain: the preset's model, seq_len, bf16 and optimizer, torch.compile on, --steps optimizer
     steps of --batch-size blocks; PyTorch SDPA allowed its flash kernel only
  3. pretrain again with flash-attn 2 (attn_implementation: flash_attention_2), --fa2-steps steps,
     where flash_attn imports and the GPU is Ampere or newer; then --variant-steps steps with the
     demo's own model and with a mixture-of-experts (OLMoE style, 8 experts of half the preset's
     MLP width, top-2: the preset's active size), MFU counted on active parameters
  4. sft, dpo_pairs, dpo, rlvr for a few steps each, from that model (dpo_pairs samples on-policy
     pairs; where every sample ties it falls back to task pairs from a file, and says so)
  5. the trainer's FSDP path: `accelerate launch --use_fsdp` on the one GPU against the same short
     run in one plain process, through benchmarks/fsdp_gpu_check.py's runner
Numbers come from the stages' own metrics/*.json (tokens_per_s, mfu, peak_tflops) and dvclive curves
(tokens/s after compilation); peak GPU memory is torch.cuda.max_memory_allocated in each stage's
process, read by a small wrapper that runs the stage module as `python -m` does (the trainer does
not record it).

    .venv/bin/python benchmarks/gpu_check.py prepare    # with network: wheels into .cache/gpu_wheels
    bash benchmarks/gpu_check.sh                        # GPU machine: offline install, check, reports/gpu_check.json
    .venv/bin/python benchmarks/gpu_check.py --dry-run  # the same plumbing on CPU: tiny model, 2-3 steps a stage

Exit status 1 when a step failed (the JSON says which and why), 2 when it cannot start.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lib"))
sys.path.insert(0, str(REPO / "benchmarks"))
from lmbuild import workspace  # noqa: E402
import fsdp_gpu_check  # noqa: E402

WHEELS = REPO / ".cache" / "gpu_wheels"
WORK = REPO / ".cache" / "gpu_check"
POST = ("sft", "dpo_pairs", "dpo", "rlvr")
# What the GPU machine brings itself (PyTorch and its CUDA libraries): never downloaded, never
# installed over. nvidia-ml-py (NVML bindings, a dvclive dependency) is not one of them.
MACHINE_OWN = re.compile(r"^(torch|triton|pytorch-triton.*|nvidia-(?!ml-py$).*|cuda-.*)$")
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64", "linux_x86_64"]
GiB = 2 ** 30

# Runs a stage module as `python -m` does, then writes this process's peak GPU memory beside the
# stage's log. GPU_CHECK_SDPA=flash leaves PyTorch's SDPA only its flash kernel (an attention call
# that cannot use it then fails instead of silently taking another kernel).
RUNNER_NAME = "gpu_check_runner.py"
RUNNER = '''"""Written by benchmarks/gpu_check.py: `python gpu_check_runner.py [-m] stages.<name>`."""
import json, os, runpy, sys

args = [a for a in sys.argv[1:] if a != "-m"]
sys.argv = list(args)
if os.environ.get("GPU_CHECK_SDPA") == "flash":
    import torch
    for switch in ("enable_math_sdp", "enable_mem_efficient_sdp", "enable_cudnn_sdp"):
        if hasattr(torch.backends.cuda, switch):
            getattr(torch.backends.cuda, switch)(False)
try:
    runpy.run_module(args[0], run_name="__main__", alter_sys=True)
finally:
    out = os.environ.get("GPU_CHECK_MEMORY")
    torch = sys.modules.get("torch")
    if out and torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        with open(f"{out}.rank{os.environ.get('LOCAL_RANK', '0')}.json", "w") as f:
            json.dump({"max_allocated_bytes": torch.cuda.max_memory_allocated(),
                       "max_reserved_bytes": torch.cuda.max_memory_reserved()}, f)
'''

KEEP = ("parameters", "parameters_non_embedding", "steps", "tokens_seen", "tokens_per_s", "mfu", "peak_tflops",
        "flops_per_token", "wall_time_s", "world_size", "train_loss", "val_loss", "unigram_val_loss",
        "nan_skipped_steps", "loss_spikes", "vocab_size", "task_accuracy", "start.task_accuracy", "pairs_train",
        "pairs_val", "prompts", "tied_prompts", "val.reward_accuracy", "sampled_reward", "start.sampled_reward")
TINY_MODEL = {"type": "llama", "hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64,
              "max_length": 128, "tie_embeddings": True}


class StageFailed(Exception):
    def __init__(self, message: str, log: Path | None = None):
        super().__init__(message)
        self.log = log

    def logged(self, text: str) -> bool:
        return self.log is not None and text in self.log.read_text(errors="replace")


# ---------------------------------------------------------------------------------------------
# prepare: where there is network


def req_name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def pip(*args: str, quiet: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pip", *args]
    return subprocess.run(cmd, capture_output=quiet, text=True)


def prepare(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="gpu_check.py prepare", description=(
        "Download the wheels of the project's dependencies (without torch and the NVIDIA packages, which "
        "the GPU machine has) for an offline install there by benchmarks/gpu_check.sh."))
    ap.add_argument("--dest", type=Path, default=WHEELS)
    ap.add_argument("--python-version", default="3.12", help="the GPU machine's Python (major.minor)")
    ap.add_argument("--platform", action="append", help=f"wheel platform tags (default: {' '.join(PLATFORMS)})")
    ap.add_argument("--extras", nargs="*", default=[], help="project extras to carry besides the core dependencies "
                    "(none by default: the check runs no data stage before tokenize; demo: the demo corpus packages)")
    ap.add_argument("--have", type=Path, help="names (or pip-freeze lines) of packages the GPU machine already has: "
                    "not downloaded (except those the project pins exactly); the installed versions must then "
                    "satisfy the requirements, or the offline install stops and names the package")
    args = ap.parse_args(argv)
    import tomllib
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    reqs = [r for r in project["dependencies"] + [r for e in args.extras for r in extras[e]]
            if not MACHINE_OWN.match(req_name(r))]
    reqs.append("setuptools>=64")  # the editable install builds offline, without build isolation
    have = set()
    if args.have:
        have = {req_name(line) for line in args.have.read_text().splitlines() if line.strip() and not line.startswith("#")}
        have -= {req_name(r) for r in reqs if "==" in r}  # an exact pin travels whatever the machine has
    dest = args.dest
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("*.whl"):
        old.unlink()
    (dest / "requirements.txt").write_text("\n".join(reqs) + "\n")

    # 1. resolve with this machine's pip: source-only packages count too (their metadata is built)
    report = dest / "resolve.json"
    p = pip("install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report),
            "-r", str(dest / "requirements.txt"))
    if p.returncode:
        print(f"prepare: resolving the requirements failed:\n{p.stderr[-3000:]}", file=sys.stderr)
        return 2
    resolved = {req_name(i["metadata"]["name"]): i["metadata"]["version"] for i in json.loads(report.read_text())["install"]}
    pins = sorted(f"{n}=={v}" for n, v in resolved.items() if not MACHINE_OWN.match(n) and n not in have)

    # 2. the GPU machine's wheels of exactly those versions; a source-only pure-Python package built here
    target = ["--no-deps", "--only-binary=:all:", "--python-version", args.python_version, "--implementation", "cp",
              *[f"--platform={t}" for t in (args.platform or PLATFORMS)], "--dest", str(dest)]
    skipped: dict[str, str] = {}
    if pip("download", "--quiet", *target, *pins).returncode:
        for pin in pins:
            if pip("download", "--quiet", *target, pin).returncode == 0:
                continue
            before = set(dest.glob("*.whl"))
            built = pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(dest), pin)
            new = set(dest.glob("*.whl")) - before
            if built.returncode or not new:
                skipped[pin] = "no wheel for the GPU machine and no wheel could be built here"
            elif not all(w.name.endswith("-none-any.whl") for w in new):
                for w in new:
                    w.unlink()
                skipped[pin] = f"no wheel for CPython {args.python_version} on the index; its source builds a " \
                               f"platform-specific wheel (build it on the GPU machine)"
    # 3. flash-attn (the gpu extra): a wheel only where the index has one for that machine
    for req in extras.get("gpu", []):
        if pip("download", "--quiet", *target, req).returncode:
            skipped[req] = (f"no wheel on the package index for CPython {args.python_version} {(args.platform or PLATFORMS)[0]}: "
                            f"it ships as source that compiles against the machine's CUDA and PyTorch")
    wheels = sorted(w.name for w in dest.glob("*.whl"))
    size = sum(w.stat().st_size for w in dest.glob("*.whl"))
    manifest = {"python_version": args.python_version, "platforms": args.platform or PLATFORMS,
                "resolved_with": f"pip on Python {platform.python_version()} (environment markers as for that version)",
                "requirements": reqs, "have": sorted(have), "pins": pins, "wheels": wheels, "bytes": size,
                "skipped": skipped, "machine_own": MACHINE_OWN.pattern}
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"prepare: {len(wheels)} wheels, {size / 2**20:.0f} MiB in {dest}", file=sys.stderr)
    for what, why in skipped.items():
        print(f"prepare: skipped {what}: {why}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------------------------
# the check


def docs_preset() -> dict:
    """The pretrain section of docs/scaling-up.md's one-GPU preset (the first yaml block under
    '## One GPU'), so that the check trains what the docs describe."""
    text = (REPO / "docs" / "scaling-up.md").read_text()
    try:
        block = text.split("\n## One GPU", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
        return yaml.safe_load(block)["pretrain"]
    except (IndexError, KeyError, TypeError, yaml.YAMLError) as exc:
        raise SystemExit(f"gpu_check: docs/scaling-up.md: no pretrain preset in a yaml block under '## One GPU' ({exc})")


def pretrain_overrides(args, preset: dict, steps: int, compile_: bool, attn: str) -> dict:
    seq, B, micro = args.seq_len, args.batch_size, args.micro_batch_size
    log_every = min(args.log_every, steps)
    sched = dict(preset.get("schedule", {}), warmup_steps=max(1, steps // 10))
    return {"pretrain.max_tokens": steps * B * seq, "pretrain.seq_len": seq, "pretrain.batch_size": B,
            "pretrain.micro_batch_size": micro, "pretrain.precision": preset["precision"], "pretrain.compile": compile_,
            "pretrain.attn_implementation": attn, "pretrain.log_every": log_every,
            "pretrain.optim": preset["optim"], "pretrain.schedule": sched,
            "pretrain.eval": {"every_steps": steps, "blocks_per_domain": args.val_blocks, "batch_size": micro},
            "pretrain.checkpoint": {"every_steps": steps, "on_mismatch": "restart"},
            "pretrain.nan": preset.get("nan", {"policy": "stop"}),
            "pretrain.model": TINY_MODEL if args.dry_run else preset["model"]}


def post_overrides(args, tasks: dict) -> dict:
    """sft, dpo_pairs, dpo and rlvr for a few steps each; held-out sets cut down so that the
    stages' start and end evaluations take seconds."""
    prec = "bf16"
    if args.dry_run:
        t = {"families": ["sort", "count"], "test_examples": 4, "max_new_tokens": 8}
        sft = {"count": 16, "seq_len": 64, "batch": 8, "epochs": 1.0}
        pairs = {"prompts_per_family": 4, "samples": 2, "max_len": 48, "batch_size": 64}
        dpo_batch, rl = 4, {"steps": 2, "batch_size": 2, "micro_batch_size": 2, "group_size": 2, "prompts_per_family": 10}
        gen = 32
    else:
        t = {"test_examples": 16}
        sft = {"count": 100, "seq_len": 512, "batch": 16, "epochs": 2.0}
        pairs = {"prompts_per_family": 16, "samples": 4, "max_len": 96, "batch_size": 256}
        dpo_batch, rl = 8, {"steps": 3, "batch_size": 8, "micro_batch_size": 8, "group_size": 4, "prompts_per_family": 50}
        gen = 256
    t = {**tasks, **t}
    # difficulty settings only for the families kept
    t["difficulty"] = {f: d for f, d in (t.get("difficulty") or {}).items() if f in t["families"]}
    few = {"every_steps": 1000}
    return {
        "tasks": t,
        "sft.init_model": "models/pretrain",
        "sft.sources": [{"name": "tasks", "type": "tasks", "count": sft["count"]}],
        "sft.epochs": sft["epochs"], "sft.seq_len": sft["seq_len"], "sft.batch_size": sft["batch"],
        "sft.micro_batch_size": sft["batch"], "sft.precision": prec, "sft.log_every": 1, "sft.optim.lr": 1e-4,
        "sft.eval": {**few, "batch_size": 16 if args.dry_run else 64}, "sft.checkpoint": few,
        "sft.nan": {"policy": "skip", "max_skipped": 10},
        "dpo.pairs": {"source": "on_policy", "val_fraction": 0.2, **pairs},
        "dpo.epochs": 1, "dpo.batch_size": dpo_batch, "dpo.micro_batch_size": dpo_batch, "dpo.precision": prec,
        "dpo.log_every": 1, "dpo.eval": {**few, "batch_size": 16 if args.dry_run else 64}, "dpo.checkpoint": few,
        "rlvr.precision": prec, "rlvr.log_every": 1, "rlvr.generation_batch_size": gen, **{f"rlvr.{k}": v for k, v in rl.items()},
        "rlvr.eval": {"every_steps": rl["steps"], "batch_size": gen, "samples": 2},
        "rlvr.checkpoint": {"every_steps": rl["steps"]},
    }


class Check:
    def __init__(self, args):
        self.args = args
        self.report: dict = {"mode": "dry-run (CPU, tiny model)" if args.dry_run else "gpu", "complete": False,
                             "summary": {}, "skipped": [], "failed": [], "seconds_total": 0.0, "device": {},
                             "packages": {}, "wheels": None, "preset": {}, "data": {}, "stages": {}}
        self.t0 = time.perf_counter()

    # -- bookkeeping
    def save(self) -> None:
        self.report["seconds_total"] = round(time.perf_counter() - self.t0, 1)
        out = self.args.out
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(self.report, indent=1, sort_keys=False) + "\n")
        tmp.replace(out)

    def skip(self, what: str, why: str) -> None:
        self.report["skipped"].append({"what": what, "why": why})
        print(f"gpu_check: skipped {what}: {why}", file=sys.stderr, flush=True)
        self.save()

    def fail(self, what: str, why: str) -> None:
        self.report["failed"].append({"what": what, "why": why})
        print(f"gpu_check: FAILED {what}: {why}", file=sys.stderr, flush=True)
        self.save()

    # -- running stages
    def workspace(self, name: str, overrides: dict, links: list[str], repo: Path = REPO) -> Path:
        root = workspace.make(self.args.work / name, overrides, links, repo=repo)
        (root / RUNNER_NAME).write_text(RUNNER)
        (root / "logs").mkdir(exist_ok=True)
        return root

    def stage(self, root: Path, stage: str, name: str | None = None, sdpa: str | None = None) -> dict:
        """Run one stage through the runner; returns its record (seconds, metrics, peak memory)."""
        name = name or stage
        log, mem = root / "logs" / f"{name}.log", root / "logs" / f"{name}.memory"
        env = {**os.environ, "LMBUILD_NO_PROGRESS": "1", "PYTHONPATH": str(root), "GPU_CHECK_MEMORY": str(mem)}
        if sdpa:
            env["GPU_CHECK_SDPA"] = sdpa
        print(f"gpu_check: {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        with log.open("w") as fh:
            rc = subprocess.run([sys.executable, RUNNER_NAME, f"stages.{stage}"], cwd=root, env=env, stdout=fh,
                                stderr=subprocess.STDOUT).returncode
        seconds = time.perf_counter() - t0
        if rc:
            tail = "".join(log.read_text(errors="replace").splitlines(True)[-12:])
            raise StageFailed(f"exit {rc} after {seconds:.0f} s ({log}):\n{tail}", log)
        rec = self.record(root, stage, mem, seconds)
        print(f"gpu_check: {name} {seconds:.0f} s", file=sys.stderr, flush=True)
        return rec

    def record(self, root: Path, stage: str, mem: Path, seconds: float | None) -> dict:
        m = workspace.read_metrics(root, stage)
        rec: dict = {"seconds": round(seconds, 1) if seconds is not None else None,
                     "metrics": {k: m[k] for k in KEEP if k in m}}
        peaks = [json.loads(f.read_text()) for f in sorted(mem.parent.glob(mem.name + ".rank*.json"))]
        if peaks:
            rec["peak_memory_allocated_gib"] = round(max(p["max_allocated_bytes"] for p in peaks) / GiB, 3)
            rec["peak_memory_reserved_gib"] = round(max(p["max_reserved_bytes"] for p in peaks) / GiB, 3)
        live = root / "dvclive" / stage / "plots" / "metrics" / "perf"
        if (live / "tokens_per_s.tsv").is_file() and m.get("steps"):
            rec.update(steady(live, int(m["steps"])))
        return rec

    # -- the steps
    def run(self) -> int:
        a, rep = self.args, self.report
        rep["device"] = device_facts()
        rep["packages"] = packages()
        rep["wheels"] = wheel_manifest(a.wheels)
        preset = docs_preset()
        rep["preset"] = {"source": "docs/scaling-up.md, One GPU", "model": TINY_MODEL if a.dry_run else preset["model"],
                         "seq_len": a.seq_len, "batch_size": a.batch_size, "micro_batch_size": a.micro_batch_size,
                         "steps": a.steps, "precision": preset["precision"], "compile": not a.dry_run,
                         "documented_batch_size": preset.get("batch_size")}
        self.save()

        # 1. data: the demo mixes re-tokenized, or the repository's tokens
        workers = max(1, min(8, (os.cpu_count() or 2) - 1))
        base = {"common.workers": workers}
        if a.vocab:
            data = self.workspace("data", {**base, "tokenize.vocab_size": a.vocab}, ["data/mix", "data/decontam"])
            try:
                rep["stages"]["tokenize"] = self.stage(data, "tokenize")
            except StageFailed as exc:
                self.fail("tokenize", str(exc))
                return self.finish()
            rep["data"] = {"source": f"demo corpus mixes (data/mix, data/decontam) re-tokenized at vocab_size {a.vocab}",
                           **{k: v for k, v in workspace.read_metrics(data, "tokenize").items()
                              if k in ("vocab_size", "pretrain.tokens", "val.tokens")}}
            data_repo, links = data, ["data/tokens", "models/tokenizer"]
        else:
            data_repo, links = REPO, ["data/tokens", "models/tokenizer"]
            meta = json.loads((REPO / "data/tokens/pretrain/meta.json").read_text())
            rep["data"] = {"source": "the repository's demo-corpus tokens (data/tokens, models/tokenizer)",
                           "vocab_size": meta["vocab_size"], "pretrain.tokens": meta["tokens"]}
        self.save()

        # 2. pretrain at the preset: bf16, torch.compile, SDPA's flash kernel only
        tasks = yaml.safe_load((REPO / "params.yaml").read_text())["tasks"]
        chain_over = {**base, **pretrain_overrides(a, preset, a.steps, not a.dry_run, "sdpa"), **post_overrides(a, tasks)}
        chain = self.workspace("chain", chain_over, links, repo=data_repo)
        sdpa = None if a.dry_run else "flash"
        if a.dry_run:
            self.skip("SDPA flash kernel", "no GPU in a dry run (PyTorch picks its CPU kernel)")
        try:
            rep["stages"]["pretrain"] = {**self.stage(chain, "pretrain", sdpa=sdpa), "attention": "sdpa" + (" (flash kernel only)" if sdpa else "")}
        except StageFailed as exc:
            if sdpa is None or not exc.logged("No available kernel"):
                self.fail("pretrain", str(exc))
                return self.finish()
            # PyTorch's words when no allowed SDPA kernel takes the call
            self.skip("SDPA flash kernel", f"an attention call cannot use SDPA's flash kernel; pretrain rerun with "
                                           f"every SDPA kernel allowed: {exc}")
            try:
                rep["stages"]["pretrain"] = {**self.stage(chain, "pretrain", name="pretrain_any_sdpa"), "attention": "sdpa (any kernel)"}
            except StageFailed as exc2:
                self.fail("pretrain", str(exc2))
                return self.finish()
        self.save()

        # 3. flash-attn 2
        self.flash_attn2(preset, chain)

        # 3b. the demo's own model, and a mixture-of-experts at the preset's active size
        self.variants(preset, chain)

        # 4. post-training from the pretrained model
        if "post" in a.skip:
            self.skip("sft, dpo_pairs, dpo, rlvr", "--skip post")
        else:
            self.post(chain)

        # 5. FSDP through accelerate on the one GPU
        if "fsdp" in a.skip:
            self.skip("FSDP", "--skip fsdp")
        else:
            self.fsdp(preset, chain)
        return self.finish()

    def flash_attn2(self, preset: dict, chain: Path) -> None:
        a = self.args
        if "fa2" in a.skip:
            return self.skip("flash-attn 2", "--skip fa2")
        if a.dry_run:
            return self.skip("flash-attn 2", "no GPU in a dry run")
        import importlib.util
        if importlib.util.find_spec("flash_attn") is None:
            why = next((w for k, w in (self.report["wheels"] or {}).get("skipped", {}).items() if k.startswith("flash")),
                       "flash_attn is not installed")
            return self.skip("flash-attn 2", why)
        if int(self.report["device"].get("capability", "0").split(".")[0]) < 8:
            return self.skip("flash-attn 2", "the GPU is older than Ampere (compute capability < 8)")
        root = self.workspace("flash_attn2", pretrain_overrides(a, preset, a.fa2_steps, True, "flash_attention_2"),
                              ["data/tokens", "models/tokenizer"], repo=chain)
        try:
            self.report["stages"]["pretrain_flash_attn2"] = {**self.stage(root, "pretrain", name="pretrain_flash_attn2"),
                                                             "attention": "flash_attention_2"}
        except StageFailed as exc:
            self.fail("pretrain with flash-attn 2", str(exc))
        self.save()

    def variants(self, preset: dict, chain: Path) -> None:
        """pretrain for --variant-steps steps with the demo's model (params.yaml) and with an
        OLMoE-style model whose active MLP equals the preset's (8 experts of half its width,
        top-2): tokens/s and MFU (on active parameters) beside the dense preset's."""
        a = self.args
        if "variants" in a.skip:
            return self.skip("demo-size and MoE pretrain", "--skip variants")
        base = TINY_MODEL if a.dry_run else preset["model"]
        demo = yaml.safe_load((REPO / "params.yaml").read_text())["pretrain"]["model"]
        moe = {**base, "type": "olmoe", "moe": {"num_experts": 8, "experts_per_token": 2,
                                                "expert_size": base["intermediate_size"] // 2}}
        for name, model in (("pretrain_demo_model", demo), ("pretrain_moe", moe)):
            over = {**pretrain_overrides(a, preset, a.variant_steps, not a.dry_run, "sdpa"), "pretrain.model": model}
            root = self.workspace(name, over, ["data/tokens", "models/tokenizer"], repo=chain)
            try:
                self.report["stages"][name] = {**self.stage(root, "pretrain", name=name), "model": model}
            except StageFailed as exc:
                self.fail(name, str(exc))
            self.save()

    def post(self, chain: Path) -> None:
        rep = self.report["stages"]
        for stage in POST:
            try:
                if stage == "dpo_pairs":
                    rep[stage] = self.dpo_pairs(chain)
                else:
                    rep[stage] = self.stage(chain, stage)
            except StageFailed as exc:
                self.fail(stage, str(exc))
                rest = POST[POST.index(stage) + 1:]
                if rest:
                    self.skip(", ".join(rest), f"{stage} failed")
                return
            self.save()

    def dpo_pairs(self, chain: Path) -> dict:
        """On-policy pairs sampled from the sft model; a model a few steps old may write only wrong
        answers (every sample ties): then pairs from a file of task solutions against other
        problems' solutions, so that dpo still runs at size."""
        try:
            return {**self.stage(chain, "dpo_pairs"), "source": "on_policy"}
        except StageFailed as exc:
            if not exc.logged("no training pairs"):
                raise
            first = next(line for line in exc.log.read_text().splitlines() if "no training pairs" in line).strip()
        path = write_task_pairs(chain)
        params = yaml.safe_load((chain / "params.yaml").read_text())
        params["dpo"]["pairs"].update(source="files", files=[{"path": path, "format": "prompt_chosen_rejected"}])
        (chain / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        self.skip("on-policy dpo pairs", f"every sampled answer tied ({first}); dpo trains on task pairs from {path}")
        return {**self.stage(chain, "dpo_pairs", name="dpo_pairs_files"), "source": f"files ({path})"}

    def fsdp(self, preset: dict, chain: Path) -> None:
        """The short pretrain in one plain process and under `accelerate launch --use_fsdp` (FSDP2)
        with one process, through fsdp_gpu_check.run; their validation losses compared."""
        a, rep = self.args, self.report["stages"]
        over = pretrain_overrides(a, preset, a.fsdp_steps, False, "auto")
        links = ["data/tokens", "models/tokenizer"]
        runner = [sys.executable, RUNNER_NAME]
        launch = [sys.executable, "-m", "accelerate.commands.launch", "--use_fsdp", "--fsdp_version", "2",
                  "--num_processes", "1", "--mixed_precision", "bf16", RUNNER_NAME]
        out = {}
        for name, launcher in (("one_process", runner), ("fsdp", launch)):
            root = self.workspace(f"fsdp_{name}", over, links, repo=chain)
            mem = root / "logs" / "pretrain.memory"
            os.environ["GPU_CHECK_MEMORY"] = str(mem)
            print(f"gpu_check: fsdp check, {name} ...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            try:
                _, seconds = fsdp_gpu_check.run(root, launcher)
                out[name] = self.record(root, "pretrain", mem, seconds)
            except SystemExit as exc:
                out[name] = self.record(root, "pretrain", mem, time.perf_counter() - t0)
                out[name]["error"] = str(exc)[-2000:]
            finally:
                os.environ.pop("GPU_CHECK_MEMORY", None)
        rep["fsdp"] = out
        one, many = out["one_process"], out["fsdp"]
        if "error" in one:
            self.fail("FSDP check: one-process run", one["error"])
        elif "error" in many:
            if "did not enable FSDP" in many["error"]:
                self.skip("FSDP", "Accelerate enables FSDP only on GPU-like devices; on CPU the launch ran without it")
            else:
                self.fail("FSDP check: accelerate launch --use_fsdp", many["error"])
        else:
            diff = abs(one["metrics"]["val_loss"] - many["metrics"]["val_loss"])
            out.update(val_loss_difference=diff, tolerance=a.fsdp_tolerance, within_tolerance=diff <= a.fsdp_tolerance)
            if diff > a.fsdp_tolerance:
                self.fail("FSDP check", f"val loss differs by {diff:.2e} (tolerance {a.fsdp_tolerance:g})")
        self.save()

    def finish(self) -> int:
        rep = self.report
        pre = rep["stages"].get("pretrain", {})
        keys = ("parameters", "tokens_per_s", "mfu", "peak_tflops")
        rep["summary"] = {
            "device": rep["device"].get("name"), "torch": rep["device"].get("torch"), "cuda": rep["device"].get("cuda"),
            "pretrain": {**{k: pre.get("metrics", {}).get(k) for k in keys},
                         **{k: pre.get(k) for k in ("tokens_per_s_after_warmup", "mfu_after_warmup",
                                                    "peak_memory_allocated_gib", "attention")}},
            "seconds": {name: r.get("seconds") for name, r in rep["stages"].items() if name != "fsdp"}
            | {f"fsdp.{name}": r.get("seconds") for name, r in rep["stages"].get("fsdp", {}).items() if isinstance(r, dict)}}
        rep["complete"] = True
        self.save()
        print(f"gpu_check: {len(self.report['failed'])} failed, {len(self.report['skipped'])} skipped, "
              f"{self.report['seconds_total']:.0f} s -> {self.args.out}", file=sys.stderr)
        return 1 if self.report["failed"] else 0


def steady(live: Path, steps: int) -> dict:
    """tokens/s and MFU after warm-up (compilation happens in the first steps): the median over the
    logged windows that end after the first fifth of the run, from the stage's dvclive curves."""
    out = {}
    for key in ("tokens_per_s", "mfu"):
        f = live / f"{key}.tsv"
        if not f.is_file():
            continue
        rows = [line.split("\t") for line in f.read_text().splitlines()[1:] if line.strip()]
        vals = [float(v) for s, v in rows if int(s) > steps // 5] or [float(v) for _, v in rows[-1:]]
        if vals:
            out[f"{key}_after_warmup"] = statistics.median(vals)
    return out


def write_task_pairs(root: Path, n: int = 8) -> str:
    """Preference pairs from the dpo part of the task train split: a problem's worked solution
    (chosen) against another problem's solution (rejected: a wrong answer for this prompt)."""
    from lmbuild.lm.task_setup import training_examples
    from lmbuild.params import validate_section
    params = yaml.safe_load((root / "params.yaml").read_text())
    tp = validate_section("tasks", params["tasks"])
    exs = training_examples(tp, n, int(params["common"]["seed"]), "dpo")
    rows = [{"prompt": ex.prompt, "chosen": ex.solution, "rejected": other.solution}
            for ex, other in zip(exs, exs[1:] + exs[:1]) if other.answer != ex.answer]
    rel = "gpu_check_pairs.jsonl"
    (root / rel).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rel


DEVICE_FACTS = """
import json, os, platform, torch
d = {"torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version()}
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    d.update(name=p.name, capability=f"{p.major}.{p.minor}", memory_gib=round(p.total_memory / 2**30, 1),
             multiprocessors=p.multi_processor_count, cudnn=torch.backends.cudnn.version(),
             gpus=torch.cuda.device_count())
else:
    d["name"] = f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
print(json.dumps(d))
"""


def device_facts() -> dict:
    """The device as the stages see it, asked in a child process so that this one holds no CUDA
    context (and no GPU memory) while the stages run."""
    p = subprocess.run([sys.executable, "-c", DEVICE_FACTS], capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(f"gpu_check: cannot read the device: {p.stderr[-2000:]}")
    d = json.loads(p.stdout)
    if "capability" in d:
        try:
            d["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                         capture_output=True, text=True, timeout=30).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            pass
    return d


def packages() -> dict:
    out = {}
    for name in ("transformers", "accelerate", "peft", "flash-attn", "numpy", "dvclive", "triton"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def wheel_manifest(path: Path) -> dict | None:
    f = path / "manifest.json"
    if not f.is_file():
        return None
    m = json.loads(f.read_text())
    return {k: m.get(k) for k in ("python_version", "skipped", "bytes")} | {"wheels": len(m.get("wheels", []))}


def main() -> int:
    if sys.argv[1:2] == ["prepare"]:
        return prepare(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true",
                    help="CPU, tiny model, 2-3 steps a stage: the same plumbing, no GPU needed (CUDA hidden)")
    ap.add_argument("--out", type=Path, help="the JSON (default reports/gpu_check.json; dry run: "
                    ".cache/gpu_check/gpu_check_dry_run.json)")
    ap.add_argument("--work", type=Path, default=WORK, help="where the scratch workspaces go (replaced)")
    ap.add_argument("--wheels", type=Path, default=WHEELS, help="the prepared wheels (read for their manifest only)")
    ap.add_argument("--vocab", type=int, help="re-tokenize the demo mixes at this vocabulary (default 32768; dry run: "
                    "0); 0 links the repository's data/tokens and models/tokenizer")
    ap.add_argument("--steps", type=int, help="pretrain optimizer steps (default 300; dry run 3)")
    ap.add_argument("--seq-len", type=int)
    ap.add_argument("--batch-size", type=int, help="blocks per optimizer step (default 64; the preset's 512 is "
                    "0.5M tokens a step, too many for a few-minute check)")
    ap.add_argument("--micro-batch-size", type=int, help="default: the preset's")
    ap.add_argument("--log-every", type=int)
    ap.add_argument("--val-blocks", type=int, help="validation blocks per domain")
    ap.add_argument("--fa2-steps", type=int, help="pretrain steps with flash-attn 2 (default 100)")
    ap.add_argument("--fsdp-steps", type=int, help="steps of each FSDP-check run (default 20; dry run 2)")
    ap.add_argument("--fsdp-tolerance", type=float, default=1e-3)
    ap.add_argument("--variant-steps", type=int, help="steps of the demo-size and MoE pretrain runs (default 100; "
                    "dry run 2)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["fa2", "variants", "post", "fsdp"])
    args = ap.parse_args()
    preset = docs_preset()
    tiny = args.dry_run
    defaults = {"vocab": 0 if tiny else 32768, "steps": 3 if tiny else 300, "seq_len": 64 if tiny else preset["seq_len"],
                "batch_size": 8 if tiny else 64, "micro_batch_size": 4 if tiny else preset["micro_batch_size"],
                "log_every": 1 if tiny else 10, "val_blocks": 1 if tiny else 8, "fa2_steps": 100,
                "fsdp_steps": 2 if tiny else 20, "variant_steps": 2 if tiny else 100,
                "out": WORK / "gpu_check_dry_run.json" if tiny else REPO / "reports" / "gpu_check.json"}
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if tiny:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # every stage on the CPU, also on a machine with GPUs
        args.work = args.work / "dry_run"
    else:
        import torch
        if not torch.cuda.is_available():
            print("gpu_check: no CUDA device here; --dry-run runs the same plumbing on the CPU", file=sys.stderr)
            return 2
    missing = [p for p in (["data/mix", "data/decontam"] if args.vocab else ["data/tokens", "models/tokenizer"])
               if not (REPO / p).exists()]
    if missing:
        print(f"gpu_check: {', '.join(missing)} missing: run `make repro` (or `dvc pull`) first", file=sys.stderr)
        return 2
    if args.batch_size % args.micro_batch_size:
        print(f"gpu_check: --batch-size {args.batch_size} is not a multiple of --micro-batch-size "
              f"{args.micro_batch_size}", file=sys.stderr)
        return 2
    return Check(args).run()


if __name__ == "__main__":
    raise SystemExit(main())
