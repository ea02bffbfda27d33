"""Rephrased synthetic data (WRAP: Maini et al. 2024, "Rephrasing the Web"): a local causal LM
rewrites a sample of the pipeline's documents in named styles, and the rewrites become a new
source of raw document shards that the filter, dedup and mix stages treat like any other."""
