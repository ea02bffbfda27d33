"""Post-training: packing (sft), preference losses and pairs (dpo), the policy-gradient
family of GRPO (rlvr). What these share with eval (sampling, log-probs, chat encoding and files,
padding, precision, the tasks section) is in lmbuild.lm."""
