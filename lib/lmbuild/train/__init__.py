"""Pretraining and annealing: the causal-LM training loop behind stages/pretrain.py and
stages/anneal.py.

Modules, one component each (torchtitan style):
  model.py       build a Llama/OLMo2 model from params (or load the previous stage's model)
  data.py        memory-mapped token shards, fixed-length blocks in a seeded order, val blocks
  optim.py       AdamW with no weight decay on embeddings, norms and biases
  schedule.py    warmup + cosine / WSD / linear-to-zero learning-rate schedules
  flops.py       FLOPs per token and the MFU estimate
  checkpoint.py  fingerprinted, atomic, resumable checkpoints
  export.py      the Hugging Face model directory
  trainer.py     the Accelerate training loop (schedule, accumulation, clipping, checkpoints, logging)
  causal_lm.py   the pretrain/anneal job: token blocks and per-domain val loss
"""
