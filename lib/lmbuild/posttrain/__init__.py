"""Post-training: packing (sft), preference losses and pairs (dpo), group-relative policy
optimisation (rlvr). What these share with eval (sampling, log-probs, chat encoding and files,
padding, precision, the tasks section) is in lmbuild.lm."""
