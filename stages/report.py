"""report: one metrics table across model stages, figures, and an offline report.

Reads:  data/eval/<stage>/metrics.json for stage in pretrain, anneal, sft, dpo, rlvr (missing
        stages are skipped, none at all is an error), data/eval/contamination.json (optional),
        metrics/judge.json (optional: judged win rates, merged as <stage>.judge.*),
        dvclive/<stage>/plots/metrics/ (loss and reward curves), plots/{filter_removals,
        dedup_cluster_sizes,rate_scores,mix_shares}.csv, metrics/<stage>.json of every stage
Writes: metrics/eval.json ({stage: {metric: ...}}, so `dvc metrics diff` shows rlvr.task_accuracy),
        reports/img/*.png, reports/report.md, reports/report.html (self-contained: images
        inlined, no scripts, no external URLs; opens offline)
Params: common, report (title, stages, dpi, smoothing, filter_top_rules, digits)
Run:    dvc repro report   (or python -m stages.report)
"""

import sys

from lmbuild.params import load_params_or_exit, stage_errors
from lmbuild.report import ReportError, build_report


def main() -> None:
    params = load_params_or_exit("report")
    with stage_errors("report", ReportError, label=False):
        summary = build_report(params, ".")
    skipped = f", {len(summary['skipped'])} sections skipped (listed in the report)" if summary["skipped"] else ""
    print(f"report: {len(summary['stages'])} stages ({', '.join(summary['stages'])}), {summary['figures']} figures"
          f"{skipped} -> reports/report.html, reports/report.md, metrics/eval.json", file=sys.stderr)


if __name__ == "__main__":
    main()
