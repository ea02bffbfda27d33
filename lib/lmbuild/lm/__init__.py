"""The shared model layer: what post-training and eval both use, so neither imports the other's
internals.

  model.py       load a trained model; the attention implementation a device supports
  precision.py   the autocast a precision setting means
  chat.py        chat-template encoding (assistant-only labels, prompts, completions), eos/pad ids
  padding.py     right-padded (prompt, completion) batches with completion masks
  reward.py      reward-model scores of (prompt, completion): one encoding for training, scorers, judge
  logprobs.py    per-token and per-sequence completion log-probs (chunked, custom backward)
  generation.py  sampling with a KV cache; held-out task accuracy, sampled reward, paired gains
  task_setup.py  the `tasks` params section resolved: difficulties, held-out and training problems
"""
