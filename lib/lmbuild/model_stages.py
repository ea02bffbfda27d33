"""The pipeline's model stages, in pipeline order: the one list that code imports. The YAML copies
that cannot import it (dvc.yaml's `eval` foreach, the allowed values in specs/eval.yaml and
specs/report.yaml, params.yaml's report.stages) are checked against it by
tests/test_pipeline_spec.py."""

MODEL_STAGES = ("pretrain", "anneal", "sft", "dpo", "rlvr")
