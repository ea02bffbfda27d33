"""The maths of lmbuild's studies: scaling laws, mixture regression, mixture weight updates and
ablation ranking. Pure numpy/scipy functions over the results of many small cached runs; the
stages that run the proxies and write the study's result file live elsewhere."""
