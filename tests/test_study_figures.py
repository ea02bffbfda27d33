"""The studies' figures: PNGs that render the same bytes twice, intervals that use Student's t
on the runs' degrees of freedom, and every study fit's report getting its figures."""

from __future__ import annotations

import numpy as np
import pytest

from lmbuild.study.figures import fit_figures, intervals, predicted_observed, scaling_curves, t95, \
    weights_over_training, write_figures

PNG = b"\x89PNG\r\n\x1a\n"


def test_t_interval_is_wider_than_the_normal_with_few_seeds():
    assert t95(2) == pytest.approx(4.303, abs=1e-3)  # 3 seeds, paired
    assert t95(float("nan")) == 1.96 and t95(1e6) == pytest.approx(1.96, abs=1e-3)


def test_figures_are_deterministic_pngs():
    rows = [("a", -0.1, 0.01, 2), ("b", 0.02, 0.03, 2)]
    one, two = intervals(rows, "t", "bpb", "base"), intervals(rows, "t", "bpb", "base")
    assert one.startswith(PNG) and one == two
    po = predicted_observed(["0", "1"], [2.0, 2.1], [2.05, 2.08], "p", "bpb")
    assert po.startswith(PNG) and po == predicted_observed(["0", "1"], [2.0, 2.1], [2.05, 2.08], "p", "bpb")
    pts = [("a", 1e4, 1e5, 3.0), ("b", 1e4, 2e5, 2.9), ("c", 2e4, 1e5, 2.95), ("h", 2e4, 2e5, 2.8)]
    assert scaling_curves(pts, lambda N, D: 2 + 10 / N ** 0.3 + 20 / D ** 0.3, "h").startswith(PNG)


def test_weights_over_training_reads_the_proxys_dvclive_curves(tmp_path):
    assert weights_over_training(tmp_path, "w") is None  # nothing logged: no figure, no error
    d = tmp_path / "plots/metrics/mixture"
    d.mkdir(parents=True)
    for dom, w in (("code", 0.3), ("prose", 0.7)):
        (d / f"{dom}.tsv").write_text("step\t" + dom + "\n" + "".join(f"{s}\t{w}\n" for s in range(4)))
    assert weights_over_training(tmp_path, "w").startswith(PNG)


def test_each_study_fit_gets_its_figures(tmp_path):
    ranked = {"default": {"diff": 0.0, "diff_stderr": 0.0, "runs": 3},
              "uniform": {"diff": 0.04, "diff_stderr": 0.05, "runs": 3}}
    params = {"studies": {"mixture": {"regression": "linear", "target": "mean"}, "compare": {"baseline": "default"},
                          "scaling": {"holdout": None}, "ablation": {"baseline": "default"}}}
    mix = fit_figures("mixture", params, {}, {"points": {"0": {"observed": 2.9, "predicted": 2.91},
                                                         "1": {"observed": 3.0, "predicted": 2.95}}})
    comp = fit_figures("compare_full", params, {}, {"mean": ranked})
    proxies = {f"p{i}": {"parameters_non_embedding": n, "tokens_seen": d, "val_loss": 3.0 - 0.1 * i}
               for i, (n, d) in enumerate([(1e4, 1e5), (1e4, 2e5), (2e4, 1e5), (2e4, 2e5)])}
    scal = fit_figures("scaling", params, proxies, {"E": 2.0, "A": 10.0, "alpha": 0.3, "B": 20.0, "beta": 0.3})
    abl = fit_figures("ablation", params, {}, {"metrics": {"bpb.all": ranked, "mc_acc_norm_mean": ranked}})
    assert set(mix) == {"predicted_vs_observed"} and set(comp) == {"differences"}
    assert set(scal) == {"scaling_curves"} and set(abl) == {"bpb_differences", "cloze_differences"}
    md = write_figures(tmp_path, {**abl, "missing": ("not drawn", None)})
    assert "![" in md and "(bpb_differences.png)" in md and "missing" not in md
    assert (tmp_path / "bpb_differences.png").read_bytes().startswith(PNG)
    assert np.isfinite(t95(ranked["uniform"]["runs"] - 1))
