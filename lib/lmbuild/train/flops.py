"""FLOPs per token and model FLOPs utilisation (MFU, PaLM appendix B: 6N + 12 L H Q T)."""

from __future__ import annotations

import time

import torch

# Dense bf16 peak of common accelerators (TFLOP/s, no sparsity).
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0,
               "RTX 4090": 165.0, "RTX 3090": 71.0, "V100": 125.0}


def flops_per_token(matmul_params: int, layers: int, hidden: int, seq_len: int) -> float:
    """Training FLOPs per token: 6 x matmul params (layers + output head) + causal attention
    scores and values (12 x layers x hidden x seq_len, PaLM's count)."""
    return 6.0 * matmul_params + 12.0 * layers * hidden * seq_len


def measure_peak_flops(device: torch.device, dtype: torch.dtype, seconds: float = 0.3, n: int = 1024) -> float:
    """Measured matmul FLOP/s on this device: the 'peak' an MFU estimate on a CPU is relative to."""
    # its own generator: a resumed run has just restored the global RNG state from a checkpoint
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=dtype, generator=g)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=g)
    a @ b
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        count += 1
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return 2.0 * n ** 3 * count / (time.perf_counter() - t0)


def peak_flops(device: torch.device, dtype: torch.dtype, override_tflops: float | None) -> tuple[float, str]:
    """(FLOP/s, how it was found): params override, the GPU table, else a measured matmul."""
    if override_tflops:
        return override_tflops * 1e12, "params"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, tf in PEAK_TFLOPS.items():
            if key in name:
                return tf * 1e12, "table"
    return measure_peak_flops(device, dtype), "measured"
