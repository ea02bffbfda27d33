"""The training loop every model stage runs (pretrain, anneal, sft, dpo, reward_model, rlvr), and
the pretrain/anneal job. A post-training stage describes its run as a `trainer.Job` (its batches,
its loss, its evaluation) in lmbuild.posttrain; the loop, checkpoints, schedules and export are
here.

Modules, one component each (torchtitan style):
  model.py       build a Llama/OLMo2 model from params (lmbuild.lm.model loads an existing one)
  data.py        memory-mapped token shards, fixed-length blocks in a seeded order, val blocks
  optim.py       AdamW with no weight decay on embeddings, norms and biases
  schedule.py    warmup + cosine / WSD / linear-to-zero learning-rate schedules
  flops.py       FLOPs per token and the MFU estimate
  checkpoint.py  fingerprinted, atomic, resumable checkpoints
  export.py      the Hugging Face model directory
  trainer.py     the Accelerate training loop (schedule, accumulation, clipping, non-finite and spike
                 handling, checkpoints, logging, synchronised GC, validation split over processes)
  numerics.py    the numerics facts (torch build, CPU features, precision) recorded with each run
  entry.py       a training stage's main(): params, run, metrics, one-line errors
  causal_lm.py   the pretrain/anneal job: token blocks and per-domain val loss
  mixture.py     batches drawn from per-domain token pools with weights (pretrain's `mixture`)
  mixture_job.py that section turned into what the trainer runs: fixed, scheduled, DoReMi or
                 dynamic weights
  domain_weights.py
                 the online weight updates: DoReMi's Group DRO step, dynamic batch loading
  lora.py        LoRA adapters for the post-training stages (peft), merged at export
"""
