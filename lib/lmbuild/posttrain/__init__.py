"""Post-training: chat data and packing (sft), preference losses and pairs (dpo), group-relative
policy optimisation (rlvr), and the sampling and log-prob helpers they share."""
