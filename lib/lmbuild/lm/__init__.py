"""The shared model layer: what post-training and eval both use, so neither imports the other's
internals.

  model.py       load a trained model; the attention implementation a device supports
  precision.py   the autocast a precision setting means
  chat_data.py   chat and preference files (JSONL, JSON, HF dataset directories; several formats)
                 read into one shape, bad rows kept with their reason; held-out conversations
  chat.py        chat-template encoding (assistant-only labels, prompts, completions), eos/pad ids
  start_model.py the model a post-training stage starts from (`<stage>.init_model`), checked and
                 given lmbuild's chat template and turn tokens where it lacks them
  padding.py     right-padded (prompt, completion) batches with completion masks
  reward.py      reward-model scores of (prompt, completion): one encoding for training, scorers, judge
  logprobs.py    per-token and per-sequence completion log-probs (chunked, custom backward)
  generation.py  sampling with a KV cache; held-out task accuracy, sampled reward, paired gains
  task_setup.py  the `tasks` params section resolved: difficulties, held-out and training problems
"""
