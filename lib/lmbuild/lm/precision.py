"""The autocast a model runs under for a precision setting (fp32 or bf16), shared by training and
evaluation so a model is measured as it was trained."""

from __future__ import annotations

import contextlib

import torch


def precision_context(precision: str, device: torch.device):
    """The autocast the trained model runs under (accelerate wraps its forward the same way), for
    measuring a model before training exactly as the loop measures it after."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
