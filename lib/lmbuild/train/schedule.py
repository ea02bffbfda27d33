"""Learning-rate schedules as a pure function of the step (so a resumed run needs only the step).

- cosine: linear warmup, then cosine from lr to lr * min_lr_ratio (Loshchilov & Hutter 2017).
- wsd: warmup-stable-decay (Hu et al. 2024, MiniCPM): constant after warmup, then a linear decay
  to lr * min_lr_ratio over the last `decay_fraction` of the steps.
- linear: warmup then linear to lr * min_lr_ratio (min_lr_ratio 0 = linear-to-zero, the anneal
  of OLMo 2 and Llama 3).
"""

from __future__ import annotations

import math


def lr_factor(step: int, total: int, kind: str, warmup: int, min_ratio: float = 0.0,
              decay_fraction: float = 0.2) -> float:
    """Multiplier of the peak lr for optimizer step `step` (0-based) out of `total`."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    t = min(1.0, max(0.0, (step - warmup) / span))
    if kind == "constant":
        return 1.0
    if kind == "cosine":
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))
    if kind == "linear":
        t = min(1.0, (step - warmup + 1) / span)
        return min_ratio + (1 - min_ratio) * (1 - t)
    if kind == "wsd":
        decay_steps = max(1, int(round(decay_fraction * total)))
        start = total - decay_steps
        if step < start:
            return 1.0
        t = min(1.0, (step - start + 1) / decay_steps)
        return min_ratio + (1 - min_ratio) * (1 - t)
    raise ValueError(f"unknown schedule kind {kind!r}")
