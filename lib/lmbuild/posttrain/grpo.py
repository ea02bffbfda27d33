"""GRPO's two pieces under their historical names: group-relative advantages and the clipped
per-token loss (Shao et al. 2024, "DeepSeekMath", arXiv:2402.03300).

Both now live in lmbuild.posttrain.policy_gradient with the rest of the family that
`rlvr.algorithm` selects (Dr. GRPO, DAPO, GSPO, RLOO, REINFORCE++); this module keeps
`from lmbuild.posttrain.grpo import group_advantages, policy_loss` working.
"""

from __future__ import annotations

from .policy_gradient import AGGREGATIONS, group_advantages, policy_loss

__all__ = ["AGGREGATIONS", "group_advantages", "policy_loss"]
