"""Quality ratings: a float column `quality_<rater>` on every document.

Raters are declared in params.yaml `rate.raters`; each has a `name` and a `kind`:

- `fasttext` (`fasttext_rater.py`): DCLM-style model-based filtering (Li et al. 2024,
  "DataComp-LM"): a fastText classifier trained in the stage on reference documents (positives)
  against a seeded sample of the rest of the pool; score = P(high quality).
- `bradley_terry` (`bradley_terry.py`): QuRating-style (Wettig et al. 2024): pairwise judgments
  -> Bradley-Terry ratings by maximum likelihood, then a ridge regression on word and bigram
  features that predicts the rating from text, so every document gets one.
- `hf_classifier` (`hf_classifier.py`): a local Hugging Face sequence-classification model
  (e.g. an educational-value classifier): regression output or the probability of a label.

`text.py` holds the text preparation that training and scoring share, `config.py` the per-kind
params check, `run.py` the stage: one read-only pass that samples training data, training in the
main process, then scoring and score statistics per shard through `lmbuild.executor.map_tasks`.

Every kind's module has the same shape: `prepare_context` / `worker_context` (what sampling
needs), `Collector` (per-shard sampling, None if the kind samples nothing), `gather` and
`problems` (merge the samples; too little data is a one-line params problem), `train` (writes
models/raters/<name>/ with rater.json) and `Scorer` (scores, empty mask) for a batch of texts.

Empty documents (no words after preparation; blank for hf_classifier) get the rater's
`empty_score`; its default per kind: 0.0 for fasttext, the lowest training-document score for
bradley_terry, the model's own output for hf_classifier.
"""
