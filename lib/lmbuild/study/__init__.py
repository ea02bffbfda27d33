"""lmbuild's studies: many small cached runs, then a fit that ranks or chooses. The stage scripts
stages/study_*.py run them; studies/dvc.yaml declares the runs.

The maths (numpy and scipy; scikit-learn for regmix's gradient-boosted trees):
  scaling.py        the Chinchilla scaling-law fit L(N, D)
  grid.py           parameter counts and the (model, token budget) grid of a scaling study
  mixtures.py       proxy mixtures: weight checks, token-budget caps, Dirichlet draws (RegMix)
  regmix.py         mixture regression (RegMix): regressions of loss on weights, the best mixture
  mixing_law.py     Ye et al.'s data mixing law, fitted per target (regmix.fit_mixing_law uses it)
  ablation.py       ranking against a baseline: paired differences, standard errors, p-values
The runs and fits (these reach into training, post-training, eval and plotting):
  proxies.py        proxy runs: small pretrains on the pool split (lmbuild.train.causal_lm)
  checks.py         a study's params, checked before its first proxy trains
  mixture_study.py  the mixture study's fit: the chosen weights and report
  compare_study.py  the compare study's fit: the mixtures ranked over seeds
  scaling_study.py  the scaling study's fit, checked on a held-out grid point
  data_ablation.py  the data ablation: each recipe's data (the data stages' library) and proxies
  ablation_fit.py   its fit: the recipes ranked on the eval suite
  methods_study.py  the post-training methods study (lmbuild.posttrain, judged with lmbuild.eval)
  figures.py        the studies' figures (matplotlib, through lmbuild.report.figures)
Domain-weight updates during training (DoReMi, dynamic batch loading): lmbuild.train.domain_weights.
"""
