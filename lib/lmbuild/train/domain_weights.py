"""Online domain-weight updates: DoReMi's Group DRO step and Sheared LLaMA's dynamic batch loading.

Both raise the weight of domains where the model trails a reference; they differ in what they
compare and how often.

DoReMi (Xie et al. 2023, Algorithm 1), every step t, on the proxy's training batch:
    lambda_t[i] = (1 / sum_{x in B_i} |x|) * sum_{x in B_i} sum_j max(l_theta,j(x) - l_ref,j(x), 0)
                  (per-domain excess loss, clipped at zero per token, averaged over the domain's tokens)
    alpha'_t    = alpha_{t-1} * exp(eta * lambda_t)                (exponentiated gradient ascent)
    alpha_t     = (1 - c) * alpha'_t / sum(alpha'_t) + c * u       (smoothing towards uniform u)
with eta = 1 and c = 1e-3 (the paper's values). The proxy then descends on
sum_i alpha_t[i] * L_i(theta); the result is the average of alpha_t over training. A domain
absent from a batch gets lambda = 0 (no evidence, no change beyond the normalisation).

Dynamic batch loading (Xia et al. 2024, Algorithm 1), every m steps, on per-domain eval losses:
    Delta_t[i] = max(loss_t[i] - ref[i], 0)
    alpha_t    = alpha_{t-m} * exp(Delta_t)    i.e. log w <- log w + Delta, w = softmax(log w)
with the reference losses from a reference model or a fitted scaling law.
"""

from __future__ import annotations

import numpy as np
import torch

DOREMI_ETA = 1.0         # Xie et al. 2023, section 2 ("step size eta = 1")
DOREMI_SMOOTHING = 1e-3  # Xie et al. 2023, section 2 ("smoothing parameter c = 1e-3")


def excess_loss(proxy_tok: torch.Tensor, ref_tok: torch.Tensor, mask: torch.Tensor, row_domain: torch.Tensor,
                n_domains: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-domain sums of clipped per-token excess loss and token counts (sums, so processes can
    add theirs before dividing). proxy_tok, ref_tok, mask: (rows, positions); row_domain: (rows,)."""
    ex = (proxy_tok.detach().float() - ref_tok.float()).clamp_min(0.0) * mask
    sums = torch.zeros(n_domains, dtype=torch.float64, device=ex.device)
    counts = torch.zeros(n_domains, dtype=torch.float64, device=ex.device)
    sums.index_add_(0, row_domain, ex.sum(dim=1).double())
    counts.index_add_(0, row_domain, mask.sum(dim=1).double())
    return sums, counts


def doremi_update(alpha: np.ndarray, excess_sums: np.ndarray, token_counts: np.ndarray,
                  eta: float = DOREMI_ETA, smoothing: float = DOREMI_SMOOTHING) -> np.ndarray:
    """One DoReMi step: the new domain weights from the old and this batch's excess losses."""
    lam = np.divide(excess_sums, token_counts, out=np.zeros_like(excess_sums, dtype=float),
                    where=token_counts > 0)
    logits = np.log(alpha) + eta * lam
    new = np.exp(logits - logits.max())
    new /= new.sum()
    return (1.0 - smoothing) * new + smoothing / len(alpha)


def dynamic_update(weights: np.ndarray, losses: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """One dynamic-batch-loading step: w <- softmax(log w + max(loss - ref, 0))."""
    logits = np.log(weights) + np.maximum(losses - reference, 0.0)
    new = np.exp(logits - logits.max())
    return new / new.sum()


def group_weighted_loss(tok_loss: torch.Tensor, mask: torch.Tensor, row_domain: torch.Tensor,
                        alpha: torch.Tensor) -> torch.Tensor:
    """sum_i alpha_i * L_i: L_i the mean token loss of domain i's rows in this batch (domains
    absent from the batch contribute nothing). The DoReMi proxy's training objective."""
    n = len(alpha)
    sums = torch.zeros(n, dtype=tok_loss.dtype, device=tok_loss.device).index_add(0, row_domain, (tok_loss * mask).sum(1))
    counts = torch.zeros(n, dtype=tok_loss.dtype, device=tok_loss.device).index_add(0, row_domain, mask.sum(1))
    present = counts > 0
    return (alpha.to(tok_loss.dtype)[present] * sums[present] / counts[present]).sum()
