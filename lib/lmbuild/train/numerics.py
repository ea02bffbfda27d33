"""What a training run's numbers depend on besides its params and data: the torch build, the
device, the CPU's vector extensions and the precision.

Data stages are byte-identical on any machine; training is identical only on the same hardware
and software, because matmul and attention kernels differ between builds and instruction sets
(an AVX512-BF16 kernel rounds differently from an AMX-BF16 one, and bf16 autocast amplifies that).
Every training stage records these, so `dvc metrics diff` between two machines says why the
losses differ.

`numbers()` goes into metrics/<stage>.json (numbers only, as DVC compares them); `describe()`
gives the same facts as strings for dvclive's params file.
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

import torch

# CPU flags (/proc/cpuinfo) that select different bf16 / fp32 kernels in oneDNN.
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def _cpuinfo() -> tuple[str, set[str]]:
    path = Path("/proc/cpuinfo")
    if not path.is_file():
        return platform.processor() or platform.machine(), set()
    text = path.read_text(errors="replace")
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    flags = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
    return (model.group(1).strip() if model else platform.machine()), set(flags.group(1).split() if flags else ())


def version_number(version: str) -> int:
    """'2.13.0+cpu' -> 21300 (major x 10000 + minor x 100 + patch): a number DVC can diff."""
    parts = [int(p) for p in re.findall(r"\d+", version.split("+")[0])[:3]] + [0, 0, 0]
    return parts[0] * 10000 + parts[1] * 100 + parts[2]


def describe(device: torch.device, precision: str) -> dict[str, str]:
    model, _ = _cpuinfo()
    out = {"torch": str(torch.__version__), "device": device.type, "precision": precision,
           "cpu": model, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "threads": str(torch.get_num_threads()), "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "")}
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
        out["cuda"] = str(torch.version.cuda)
    return out


def numbers(device: torch.device, precision: str) -> dict[str, float]:
    _, flags = _cpuinfo()
    out = {"torch_version": version_number(str(torch.__version__)), "cuda": int(device.type == "cuda"),
           "bf16": int(precision == "bf16"), "threads": torch.get_num_threads(),
           "cpu_capability_avx512": int(torch.backends.cpu.get_cpu_capability() == "AVX512")}
    out.update({f"cpu_{f}": int(f in flags) for f in CPU_FLAGS})
    return out
