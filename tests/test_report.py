"""report: on a fake project (eval results of three stages, contamination, dvclive curves, the
data stages' plot tables and metrics) the stage writes one metrics file keyed by stage in pipeline
order, a markdown report linking images that exist, and an HTML page that is self-contained
(every image a data: URI, no external URL), byte-identical across runs, and renders in headless
Chromium with the network cut off. Missing inputs and bad params are one-line errors."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import run_stage, tree_digest

TITLE = "lmbuild <report> & co"
EVAL = {
    "sft": {"bpb": {"all": 2.1, "all_stderr": 0.05, "encyclopedic": 1.9, "code": 2.5}, "task_accuracy": 0.2,
            "task_accuracy_stderr": 0.03, "task_format": 0.9,
            "task_accuracy_sort": 0.4, "mc": {"cloze_encyclopedic": {"acc": 0.4, "acc_norm": 0.45, "n": 120}},
            "chat": True, "model": "models/sft"},
    "dpo": {"bpb": {"all": 2.15, "encyclopedic": 1.95, "code": 2.55}, "task_accuracy": 0.3, "task_format": 0.95,
            "preference_accuracy": 0.7, "chat": True},
    "rlvr": {"bpb": {"all": 2.2, "encyclopedic": 2.0, "code": 2.6}, "task_accuracy": 0.55,
             "task_accuracy_stderr": 0.04, "task_format": 1.0,
             "task_accuracy_sort": 0.7, "mc": {"cloze_encyclopedic": {"acc": 0.42, "acc_norm": 0.47, "n": 120}},
             "chat": True},
}
CONTAMINATION = {
    "rlvr": {"tasks_test": {"overlap_rate": 0.0, "items": 200, "contaminated": 0}},
    "sft": {"tasks_test": {"overlap_rate": 0.01, "items": 200, "contaminated": 2},
            "cloze_encyclopedic": {"overlap_rate": 0.0, "items": 120, "contaminated": 0}},
    "base": {"x": {"overlap_rate": 0.5}},  # not a model stage: ignored and noted
}
JUDGE = {"sft.mean_length": 31.5, "dpo.win_rate": 0.625, "dpo.win_rate_stderr": 0.05, "dpo.lc_win_rate": 0.5,
         "dpo.lc_win_rate_stderr": 0.04, "base.win_rate": 0.9}   # base: not an evaluated stage, ignored
CURVES = {
    "sft": ["train/loss", "val/loss", "val/task_accuracy", "val/task_accuracy_stderr"],
    "dpo": ["train/loss", "train/reward_accuracy", "train/reward_margin", "train/reward_chosen",
            "train/reward_rejected", "val/reward_accuracy", "val/reward_margin", "val/task_accuracy"],
    "rlvr": ["train/loss", "train/reward", "train/groups_any_correct", "train/kl", "train/response_length",
             "val/task_accuracy", "val/sampled_reward"],
}
FIGURES = {"eval_stages", "filter_removals", "dedup_cluster_sizes", "rate_scores", "mix_shares", "loss_sft", "loss_dpo",
           "loss_rlvr", "task_accuracy", "rewards_dpo", "rewards_rlvr"}


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def write_params(root: Path, report: dict) -> None:
    write(root / "params.yaml", yaml.safe_dump({"common": {"seed": 1}, "report": report}, sort_keys=False))


def make_inputs(root: Path) -> None:
    write_params(root, {"title": TITLE})
    for stage, metrics in EVAL.items():
        write(root / "data/eval" / stage / "metrics.json", json.dumps(metrics))
    write(root / "data/eval/contamination.json", json.dumps(CONTAMINATION))
    write(root / "metrics/judge.json", json.dumps(JUDGE))
    for stage, names in CURVES.items():
        for k, name in enumerate(names):
            every = 1 if name.startswith("train/") else 4
            rows = [f"{s}\t{1.0 / (1 + s) + 0.1 * k + 0.01 * (s % 3)}" for s in range(every, 21, every)]
            write(root / "dvclive" / stage / "plots/metrics" / f"{name}.tsv",
                  f"step\t{name.split('/')[1]}\n" + "\n".join(rows) + "\n")
    write(root / "plots/filter_removals.csv", "source,rule,documents,chars\n"
          "web,langid,40,4000\nweb,c4.min_sentences,3,90\ncode,langid,2,10\ncode,gopher_quality.min_words,0,0\n")
    write(root / "plots/dedup_cluster_sizes.csv", "size,clusters\n1,500\n2,12\n3,2\n7,1\n")
    bins = [(i / 4, (i + 1) / 4) for i in range(4)]
    write(root / "plots/rate_scores.csv", "rater,source,bin_low,bin_high,documents\n" + "".join(
        f"{rater},{src},{lo},{hi},{n}\n" for rater in ("dclm", "qurating") for src, counts in
        (("web", (30, 10, 5, 1)), ("wiki", (1, 3, 10, 40))) for (lo, hi), n in zip(bins, counts)))
    write(root / "plots/mix_shares.csv", "split,domain,requested_share,achieved_share,tokens_est\n"
          "pretrain,web,0.7,0.68,700\npretrain,code,0.3,0.32,300\nanneal,web,0.5,0.5,50\nanneal,code,0.5,0.5,50\n")
    write(root / "metrics/filter.json", json.dumps({
        "documents_in": 100, "documents_kept": 55, "kept_fraction": 0.55, "pii.emails": 3,
        "removed.langid.documents": 42, "removed.c4.min_sentences.documents": 3}))
    write(root / "metrics/dedup.json", json.dumps({
        "documents_in": 55, "documents_kept": 50, "exact_duplicates": 2, "near_duplicates": 3, "clusters": 4,
        "largest_cluster": 3}))
    write(root / "metrics/mix.json", json.dumps({
        "pretrain.documents": 40, "pretrain.tokens_est": 1000.0, "pretrain.token_budget": 1000,
        "val.documents": 5, "val.tokens_est": 100.0, "shortfalls": 0}))
    write(root / "metrics/sft.json", json.dumps({"steps": 20, "train_loss": 1.5, "val_loss": 1.7}))


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    make_inputs(root)
    shutil.copytree(root, root.parent / (root.name + "_inputs"))  # pristine copy for the rerun
    proc = run_stage(root, "report", timeout=120)
    assert "report: 3 stages" in proc.stderr
    return root


def test_eval_metrics_keyed_by_stage_in_pipeline_order(built):
    data = json.loads((built / "metrics/eval.json").read_text())
    assert list(data) == ["sft", "dpo", "rlvr"]
    assert data["rlvr"]["task_accuracy"] == 0.55
    assert data["sft"]["mc"]["cloze_encyclopedic"] == {"acc": 0.4, "acc_norm": 0.45, "n": 120}
    assert data["sft"]["bpb"]["code"] == 2.5 and data["sft"]["chat"] == 1  # bools as 0/1 for dvc
    assert "model" not in data["sft"]  # strings are not metrics
    assert data["rlvr"]["contamination"]["tasks_test"] == {"contaminated": 0, "items": 200, "overlap_rate": 0.0}
    assert data["sft"]["contamination"]["tasks_test"]["contaminated"] == 2
    assert "contamination" not in data["dpo"] and "base" not in data
    # the judge's win rates (metrics/judge.json) join the one metrics file under <stage>.judge
    assert data["dpo"]["judge"] == {"win_rate": 0.625, "win_rate_stderr": 0.05, "lc_win_rate": 0.5,
                                    "lc_win_rate_stderr": 0.04}
    assert data["sft"]["judge"] == {"mean_length": 31.5} and "judge" not in data["rlvr"]


def test_markdown_has_table_and_links_to_existing_images(built):
    md = (built / "reports/report.md").read_text()
    assert "| metric | sft | dpo | rlvr |" in md
    # estimates with a standard error show the half-width of their 95% interval, 1.96 x se
    assert "| task_accuracy | 0.2 ± 0.0588 | 0.3 | 0.55 ± 0.0784 |" in md
    assert "| bpb.all | 2.1 ± 0.098 | 2.15 | 2.2 |" in md and "_stderr" not in md
    assert "| mc.cloze_encyclopedic.acc | 0.4 | — | 0.42 |" in md
    assert "| stage / eval set | contaminated | items | overlap_rate |" in md
    assert "| sft / tasks_test | 2 | 200 | 0.01 |" in md
    links = set(re.findall(r"!\[[^\]]*\]\(img/([^)]+)\.png\)", md))
    assert links == FIGURES
    assert {p.stem for p in (built / "reports/img").glob("*.png")} == FIGURES
    assert "kept 55 of 100 documents" in md and "contamination for 'base' ignored" in md
    assert "evaluation of pretrain (no data/eval/pretrain/metrics.json)" in md  # skipped, listed


def test_html_is_self_contained_and_images_decode(built):
    from PIL import Image

    page = (built / "reports/report.html").read_text()
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page.lower() and "<link" not in page.lower()
    srcs = re.findall(r'src="([^"]*)"', page)
    assert len(srcs) == len(FIGURES)
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        png = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        with Image.open(io.BytesIO(png)) as im:
            im.verify()
        assert b"Software" not in png and b"Creation Time" not in png
    assert f"<title>{TITLE.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')}</title>" in page
    assert "<report>" not in page  # escaped everywhere


def test_byte_identical_rerun(built):
    again = built.parent / (built.name + "_inputs")
    run_stage(again, "report", timeout=120)
    for rel in ("reports", "metrics/eval.json"):
        a, b = built / rel, again / rel
        if a.is_dir():
            assert tree_digest(a) == tree_digest(b)
        else:
            assert a.read_bytes() == b.read_bytes()


def test_no_eval_results_is_a_one_line_error(tmp_path):
    write_params(tmp_path, {})
    proc = run_stage(tmp_path, "report", check=False, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "no evaluation results" in lines[0] and "stages.eval" in lines[0]
    assert not (tmp_path / "reports").exists() and not (tmp_path / "metrics/eval.json").exists()


def test_bad_params_stop_before_work(tmp_path):
    write_params(tmp_path, {"dpi": 5, "stages": ["sft", "eval"]})
    proc = run_stage(tmp_path, "report", check=False, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "report.dpi: must be >= 50, got 5" in proc.stderr
    assert "report.stages[1]: must be one of" in proc.stderr


def test_renders_offline_in_headless_chromium(built, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium) — cannot check the page renders")
    from PIL import Image

    page = (built / "reports/report.html").read_text()
    probe = ("<script>window.addEventListener('load', () => { const im = [...document.images]; "
             "document.title = JSON.stringify({n: im.length, ok: im.filter(i => i.complete && i.naturalWidth > 0)"
             ".length, fetched: performance.getEntriesByType('resource').length}); });</script>")
    copy = tmp_path / "probe.html"
    copy.write_text(page.replace("</body>", probe + "</body>"))
    base = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--disable-extensions", "--disable-background-networking", "--disable-component-update",
            f"--user-data-dir={tmp_path / 'profile'}", "--proxy-server=127.0.0.1:9",
            "--proxy-bypass-list=<-loopback>", "--virtual-time-budget=5000", "--hide-scrollbars"]
    dom = subprocess.run([*base, "--dump-dom", copy.as_uri()], capture_output=True, text=True, timeout=60)
    title = re.search(r"<title>(.*?)</title>", dom.stdout, re.S)
    assert title, f"chromium printed no DOM:\n{dom.stderr[-2000:]}"
    counts = json.loads(title.group(1))
    assert counts == {"n": len(FIGURES), "ok": len(FIGURES), "fetched": 0}

    shot = tmp_path / "shot.png"
    subprocess.run([*base, f"--screenshot={shot}", "--window-size=1200,3000", (built / "reports/report.html").as_uri()],
                   capture_output=True, timeout=60)
    assert shot.exists() and shot.stat().st_size > 50_000
    with Image.open(shot) as im:
        assert im.size == (1200, 3000)
        assert len(im.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 200  # figures, not a blank page


def test_task_space_table_reads_what_each_stage_drew(tmp_path):
    """The post-training section's table: each family's space and the distinct (drawn) problems
    of sft, dpo_pairs and rlvr, from the keys those stages' metrics write."""
    from lmbuild.report.run import task_space_table
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics/sft.json").write_text(json.dumps({
        "sources.tasks.problems.sort.distinct": 1900, "sources.tasks.problems.sort.drawn": 2000,
        "sources.tasks.problems.sort.space": 1111000, "sources.tasks.examples": 2000}))
    (tmp_path / "metrics/rlvr.json").write_text(json.dumps({
        "pool.sort.distinct": 1500, "pool.sort.drawn": 1600, "pool.sort.space": 1111000}))
    kind, head, rows = task_space_table(tmp_path)
    assert kind == "table" and head == ["family", "problems", "sft", "dpo_pairs", "rlvr"]
    assert rows == [["sort", "1,111,000", "1,900 (2,000)", "", "1,500 (1,600)"]]
    assert task_space_table(tmp_path / "nothing") is None
