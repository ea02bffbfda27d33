"""What a training run's numbers depend on, as training stages record it in their metrics."""

from __future__ import annotations

import torch

from lmbuild.train import numerics


def test_versions_become_comparable_numbers():
    assert numerics.version_number("2.13.0+cpu") == 21300
    assert numerics.version_number("2.4.1") == 20401
    assert numerics.version_number("2.13.0") > numerics.version_number("2.9.9")


def test_numbers_and_text_name_the_precision_device_and_cpu_features():
    cpu = torch.device("cpu")
    nums = numerics.numbers(cpu, "bf16")
    assert nums["bf16"] == 1 and nums["cuda"] == 0 and nums["threads"] == torch.get_num_threads()
    assert numerics.numbers(cpu, "fp32")["bf16"] == 0
    assert {f"cpu_{f}" for f in numerics.CPU_FLAGS} <= set(nums)
    assert all(isinstance(v, int) for v in nums.values())  # DVC compares numbers only
    text = numerics.describe(cpu, "bf16")
    assert text["torch"] == str(torch.__version__) and text["precision"] == "bf16" and text["cpu"]
    assert all(isinstance(v, str) for v in text.values())  # dvclive's params file takes plain strings
