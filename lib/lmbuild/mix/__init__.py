"""The mix stage's library: choose the documents (and how often) of the pretrain, anneal and
validation sets from the rated pool, at the requested domain shares and token budgets."""
