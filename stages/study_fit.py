"""study_fit: the result of a study from its finished proxies.

Reads:  studies/<study>/proxies/*/metrics.json, data/tokens/pool/meta.json (caps)
Writes: mixture: studies/mixture/weights.json (pretrain.mixture.weights_file can name it),
                 studies/mixture/report.md, metrics/study_mixture.json
        each study's report.md links its figures, written beside it (studies/<study>/*.png)
        compare, compare_full: studies/<study>/report.md, metrics/study_<study>.json
        scaling: studies/scaling/report.md, metrics/study_scaling.json
        ablation: studies/ablation/report.md, metrics/study_ablation.json (from the recipes' proxies'
                  eval-suite metrics, studies/ablation/proxies/*/eval/metrics.json)
Params: common, pretrain (max_tokens: the caps of the chosen mixture), mix (the prior), studies
Run:    python -m stages.study_fit mixture | compare | compare_full | scaling | ablation   (normally `dvc repro studies/dvc.yaml`)
"""

import json
import sys
from pathlib import Path

from lmbuild.metrics import write_metrics
from lmbuild.params import load_params_or_exit, stage_errors
from lmbuild.shards import atomic_write_text
from lmbuild.study.compare_study import compare
from lmbuild.study.ablation_fit import fit as ablation_fit
from lmbuild.study.ablation_fit import read_runs
from lmbuild.study.figures import fit_figures, write_figures
from lmbuild.study.mixture_study import fit_study, write
from lmbuild.study.proxies import StudyError, read_proxies
from lmbuild.study.mixtures import RegmixError
from lmbuild.study.scaling_study import fit_grid

ROOT = Path("studies")


def main() -> None:
    study = sys.argv[1]
    params = load_params_or_exit("studies", shared=("pretrain", "mix"))
    proxies = read_proxies(ROOT / study / "proxies")
    with stage_errors("studies", StudyError, RegmixError, ValueError, label=f"study_fit {study}"):
        if study == "mixture":
            result, metrics, report = fit_study(params, proxies, Path("data/tokens"))
            write(result, ROOT / "mixture" / "weights.json")
            summary = f"chosen {result['weights']} (predicted bpb {result['predicted_bpb']:.4f})"
        elif study in ("compare", "compare_full"):
            metrics, report = compare(params, proxies, "proxy size" if study == "compare" else
                                      "the demo's pretrain size")
            summary = ", ".join(f"{m} {v['mean']:.4f} +- {v['stderr']:.4f}" for m, v in metrics["mean"].items())
        elif study == "ablation":
            recipes = {p.parent.name: json.loads(p.read_text()) for p in sorted((ROOT / "ablation" / "data").glob("*/recipe.json"))}
            metrics, report = ablation_fit(params, read_runs(ROOT / "ablation" / "proxies"), recipes)
            summary = "; ".join(f"{r} {h['bpb_all_diff']:+.4f} +- {h['bpb_all_diff_stderr']:.4f} bpb"
                                for r, h in metrics["headline"].items())
        elif study == "scaling":
            metrics, report = fit_grid(params, proxies)
            summary = (f"L = {metrics['E']:.3f} + {metrics['A']:.3g}/N^{metrics['alpha']:.3f} + "
                       f"{metrics['B']:.3g}/D^{metrics['beta']:.3f}" + (
                           f"; held-out point off by {metrics['holdout']['rel_error']:.1%}" if "holdout" in metrics else ""))
        else:
            raise StudyError(f"unknown study {study!r} (mixture, compare, compare_full, scaling, ablation)")
    figures = write_figures(ROOT / study, fit_figures(study, params, proxies, metrics))
    atomic_write_text(ROOT / study / "report.md", report + ("\n## Figures\n\n" + figures + "\n" if figures else ""))
    write_metrics(Path(f"metrics/study_{study}.json"), metrics)
    print(f"study_fit {study}: {len(proxies)} proxies; {summary}", file=sys.stderr)


if __name__ == "__main__":
    main()
