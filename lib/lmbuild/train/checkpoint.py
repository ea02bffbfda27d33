"""Resumable checkpoints with a fingerprint, and no pickle.

`checkpoints/<stage>/` (a `persist: true` DVC output) holds `latest/` (model, optimizer, step,
data position, loop counters, RNG states) and `fingerprint.json`: a hash of the stage's params
and of its inputs. A rerun resumes from `latest/` only when the fingerprint matches; otherwise it
stops with a message saying what to do. Each checkpoint is written to a temporary directory and
renamed into place, so a kill mid-write leaves the previous one intact.

Checkpoints travel through shared DVC caches and remotes, so loading one must not run code:
`latest/tensors.safetensors` holds every tensor (safetensors is a header plus raw buffers) and
`latest/state.json` everything else, with tensors, numpy arrays, tuples and non-string dict keys
written as tagged JSON objects. Nothing is unpickled; a `state.pt` (the pickle format of earlier
versions) is refused with one line, never opened.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..shards import atomic_write_text

STATE, TENSORS, LEGACY = "state.json", "tensors.safetensors", "state.pt"


class CheckpointError(Exception):
    """A checkpoint that must not be resumed; the message says what to do."""


def file_digest(path: Path, h=None) -> str:
    h = h or hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def dir_digest(root: Path | str) -> str:
    """Hash of every file (relative name + content) under root, in sorted order."""
    root = Path(root)
    h = hashlib.blake2b(digest_size=16)
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + b"\0" + file_digest(p).encode())
    return h.hexdigest()


def code_digest(package_dirs: list[Path]) -> str:
    """Hash of the .py files of the packages that do the training: a resumed run must run the code
    that wrote the checkpoint (dvc repro reruns a stage when its code changes)."""
    h = hashlib.blake2b(digest_size=16)
    for root in package_dirs:
        for p in sorted(Path(root).rglob("*.py")):
            h.update(f"{p.parent.name}/{p.name}".encode() + b"\0" + file_digest(p).encode())
    return h.hexdigest()


def fingerprint(params: dict, inputs: dict[str, Path], code: str = "") -> dict:
    """{'params': hash, 'inputs': {name: hash}, 'code': hash, 'id': hash of all}."""
    p = hashlib.blake2b(json.dumps(params, sort_keys=True, default=str).encode(), digest_size=16).hexdigest()
    ins = {name: dir_digest(path) if Path(path).is_dir() else file_digest(Path(path))
           for name, path in sorted(inputs.items())}
    if code:
        ins["code"] = code
    ident = hashlib.blake2b(json.dumps([p, ins], sort_keys=True).encode(), digest_size=16).hexdigest()
    return {"id": ident, "params": p, "inputs": ins}


def check_fingerprint(ckpt_dir: Path, fp: dict, stage: str, on_mismatch: str = "stop") -> bool:
    """True when a matching checkpoint exists to resume. A checkpoint made with other params or
    inputs is never loaded: on_mismatch "restart" says so and trains from the start (what
    `dvc repro` after a params change needs), "stop" raises CheckpointError."""
    latest, fp_path = ckpt_dir / "latest", ckpt_dir / "fingerprint.json"
    if (latest / LEGACY).exists() and not (latest / STATE).exists():
        raise CheckpointError(f"{latest / LEGACY}: a pickled checkpoint is never loaded (unpickling can run code); "
                              f"delete {ckpt_dir} to start {stage} over")
    if not (latest / STATE).exists():
        return False
    old = json.loads(fp_path.read_text()) if fp_path.exists() else {}
    if old.get("id") == fp["id"]:
        return True
    what = []
    if old.get("params") != fp["params"]:
        what.append("params (common.seed or the " + stage + " section)")
    for name, h in fp["inputs"].items():
        if old.get("inputs", {}).get(name) != h:
            what.append(name)
    if on_mismatch == "restart":
        print(f"{ckpt_dir}: the checkpoint was made with different {', '.join(what) or 'inputs'}; not loaded, "
              f"{stage} starts over", file=sys.stderr)
        return False
    raise CheckpointError(
        f"{ckpt_dir}: the checkpoint was made with different {', '.join(what) or 'inputs'}; "
        f"delete {ckpt_dir} to start {stage} over, or restore the params and inputs it was made with "
        f"({stage}.checkpoint.on_mismatch: restart does this by itself)")


def rng_state() -> dict:
    st = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    np.random.set_state(st["numpy"])
    random.setstate(st["python"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


class _Encoder:
    """Splits a state tree into JSON (with tags) and a flat {key: tensor} for safetensors."""

    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}

    def __call__(self, obj, path: str):
        if isinstance(obj, torch.Tensor):
            # a copy of its own: safetensors refuses tensors that share storage (tied embeddings)
            self.tensors[path] = obj.detach().cpu().clone().contiguous()
            return {"__tensor__": path}
        if isinstance(obj, np.ndarray):
            arr = np.ascontiguousarray(obj)
            # uint32 (numpy's MT19937 key) has no safe torch twin everywhere: widened, narrowed on load
            self.tensors[path] = torch.from_numpy(arr.astype(np.int64) if arr.dtype == np.uint32 else arr.copy())
            return {"__ndarray__": path, "dtype": str(arr.dtype)}
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, tuple):
            return {"__tuple__": [self(v, f"{path}.{i}") for i, v in enumerate(obj)]}
        if isinstance(obj, list):
            return [self(v, f"{path}.{i}") for i, v in enumerate(obj)]
        if isinstance(obj, dict):
            if all(isinstance(k, str) and not k.startswith("__") for k in obj):
                return {k: self(v, f"{path}.{k}") for k, v in obj.items()}
            return {"__items__": [[self(k, f"{path}.k{i}"), self(v, f"{path}.{i}")]
                                  for i, (k, v) in enumerate(obj.items())]}
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        raise TypeError(f"checkpoint state at {path}: {type(obj).__name__} cannot be saved without pickle")


def _decode(obj, tensors: dict[str, torch.Tensor]):
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if "__ndarray__" in obj:
        return tensors[obj["__ndarray__"]].numpy().astype(obj["dtype"])
    if "__tuple__" in obj:
        return tuple(_decode(v, tensors) for v in obj["__tuple__"])
    if "__items__" in obj:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in obj["__items__"]}
    return {k: _decode(v, tensors) for k, v in obj.items()}


def save(ckpt_dir: Path, fp: dict, model: torch.nn.Module, optimizer, state: dict) -> None:
    """Write checkpoints/<stage>/latest atomically (call on the main process only)."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    tmp = ckpt_dir / ".latest.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    enc = _Encoder()
    tree = enc({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": rng_state(), **state}, "s")
    save_file(enc.tensors, str(tmp / TENSORS))
    (tmp / STATE).write_text(json.dumps(tree, sort_keys=True) + "\n")
    atomic_write_text(ckpt_dir / "fingerprint.json", json.dumps(fp, indent=1, sort_keys=True) + "\n")
    old = ckpt_dir / ".latest.old"
    shutil.rmtree(old, ignore_errors=True)
    if (ckpt_dir / "latest").exists():
        os.replace(ckpt_dir / "latest", old)
    os.replace(tmp, ckpt_dir / "latest")
    shutil.rmtree(old, ignore_errors=True)


def load(ckpt_dir: Path) -> dict:
    """The state `save` wrote: tensors read by safetensors, the rest parsed as JSON; no code runs."""
    latest = ckpt_dir / "latest"
    if (latest / LEGACY).exists() and not (latest / STATE).exists():
        raise CheckpointError(f"{latest / LEGACY}: a pickled checkpoint is never loaded (unpickling can run code); "
                              f"delete {ckpt_dir} to start over")
    return _decode(json.loads((latest / STATE).read_text()), load_file(str(latest / TENSORS)))
