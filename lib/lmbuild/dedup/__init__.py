"""Exact and near-duplicate removal across all sources, out of core.

What counts as a duplicate:

- exact: the same normalised text (lowercased, punctuation stripped, whitespace collapsed, each
  switchable in params `dedup.normalize`; see normalize.py), compared by a 128-bit hash
  (exact.py);
- near: MinHash signatures of word n-grams (Broder 1997) banded for LSH (Leskovec, Rajaraman,
  Ullman, "Mining of Massive Datasets", ch. 3): two documents whose signatures agree on all rows
  of at least one band are linked (minhash.py, lsh.py). Links are not verified against a
  Jaccard threshold; the banding S-curve alone decides (lsh.py says why).

Exact and near links together form clusters by connected components (clusters.py), so A~B and
B~C put A, B and C in one cluster. Each cluster keeps one document, chosen deterministically:
earlier in `source_priority` first (unlisted sources after the listed ones), then the longer
text, then the smaller id. The others go to the removed shards with the keeper's id and
whether their normalised text equals the keeper's (`exact`) or not (`near`).

Documents with fewer words than the n-gram size are one shingle, their whole text; documents
with no word at all after normalisation (empty, whitespace or punctuation only) take part in
neither exact nor near matching and are always kept (counted in the metrics).

Default banding, 20 bands x 12 rows = 240 permutations of word 5-grams: a pair of Jaccard J
becomes a candidate with P(J) = 1 - (1 - J^12)^20:

    P(0.85) = 1 - (1 - 0.1422)^20 = 1 - 0.0465 = 0.953    (target: recall >= 0.9 at J >= 0.85)
    P(0.50) = 1 - (1 - 0.000244)^20 = 0.0049              (target: <= 1% false positives at J <= 0.5)
    P(0.70) = 0.24, P(0.75) = 0.48, P(0.80) = 0.76, P(0.90) = 0.9987; threshold (1/20)^(1/12) = 0.78

and 240 permutations estimate J with standard error sqrt(J(1-J)/240) <= 0.032 (mean absolute
error about 0.8 of that, <= 0.026; target 0.03). For comparison, FineWeb's datatrove defaults
(5-grams, 14 bands x 8 rows = 112 hashes) give P(0.85) = 0.988 but P(0.5) = 0.053, and NVIDIA
NeMo Curator's fuzzy dedup defaults use 20 bands x 13 rows (over 24-character n-grams), the
same number of bands with one row more: P(0.85) = 0.924, P(0.5) = 0.0024.

Scale: signatures are computed per shard in parallel (run.signature_task), band keys are joined
one band at a time (run.band_task; memory O(documents) per band: keys and integer indices,
never text or signatures), and the outputs are written per shard in parallel. Outputs are
byte-identical for the same inputs, params and seed, whatever the worker count or executor.

Modules: normalize (text normalisation), hashing (vectorised 64-bit hashes), words (words of a
batch, hashed from the Arrow buffer), exact (exact keys and their join), minhash (signatures),
lsh (S-curve, band keys, bucket joins), clusters (union-find, keepers), config (params and
cross-checks), report (histogram, markdown sample), run (the stage's plan), paragraphs and
paragraph_join (paragraph-level exact dedup of the kept documents, after the above).
"""
