"""The reward model: the Bradley-Terry loss on hand-computed values and its gradient signs, the
calibration error by hand, the shared scorer's encoding and head checks, rlvr's reward mix; and
(slow) the reward_model stage on the tiny chain of test_posttrain (sft, dpo_pairs) and on an easy
synthetic preference set."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from lmbuild.params import ParamsError
from lmbuild.posttrain.reward_model import bt_loss, calibration_error


def test_bt_loss_by_hand():
    rc, rr = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 0.0])
    # -log sigma(1) = log(1 + e^-1) = 0.31326; -log sigma(0) = log 2 = 0.69315
    assert float(bt_loss(rc, rr)) == pytest.approx((math.log1p(math.exp(-1)) + math.log(2)) / 2, abs=1e-6)
    # centring: + 0.01 x mean((2 + 1)^2, 0^2) = 0.01 x 4.5
    assert float(bt_loss(rc, rr, 0.01)) == pytest.approx((0.313262 + 0.693147) / 2 + 0.045, abs=1e-5)


def test_bt_gradient_raises_chosen_and_lowers_rejected():
    rc = torch.tensor([0.5, -1.0], requires_grad=True)
    rr = torch.tensor([0.0, 1.0], requires_grad=True)
    bt_loss(rc, rr).backward()
    # d/d r_c of softplus(r_r - r_c) = -sigma(r_r - r_c) / n: descent raises r_chosen
    assert rc.grad.tolist() == pytest.approx([-torch.sigmoid(torch.tensor(-0.5)).item() / 2,
                                              -torch.sigmoid(torch.tensor(2.0)).item() / 2], abs=1e-6)
    assert (rc.grad < 0).all() and (rr.grad > 0).all()
    assert (rc.grad + rr.grad).abs().max() < 1e-7  # only the difference matters (BT is shift-invariant)


def test_calibration_error_by_hand():
    # margins +-log(3): confidence sigma(log 3) = 0.75 in one bin; 3 of 4 right -> ECE 0
    ln3 = math.log(3)
    assert calibration_error([ln3, ln3, ln3, -ln3]) == pytest.approx(0.0, abs=1e-9)
    # all right at 0.75: |1 - 0.75| = 0.25
    assert calibration_error([ln3] * 4) == pytest.approx(0.25, abs=1e-9)
