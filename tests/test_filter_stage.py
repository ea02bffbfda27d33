"""The filter stage on a small user corpus: defaults the user did not choose are said in the log
and counted in the metrics (a domain that filter.domains does not name gets filter.rules, English
language ID included)."""

from __future__ import annotations

import json

from conftest import requires_lid

SENTENCE = "The committee published its annual report on the state of the regional water supply today."


@requires_lid
def test_unnamed_domain_is_warned_and_counted(project):
    (project.root / "in").mkdir()
    rows = [{"text": " ".join([SENTENCE] * 8), "kind": "manuals"} for _ in range(3)]
    rows += [{"text": " ".join([SENTENCE] * 8), "kind": "technical"} for _ in range(2)]
    (project.root / "in/docs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    project.params["acquire"] = {"sources": [{"name": "docs", "kind": "jsonl", "domain": "technical",
                                              "paths": ["in/docs.jsonl"], "domain_field": "kind"}]}
    project.run("acquire")
    p = project.run("filter")
    warning = [line for line in p.stderr.splitlines() if "warning" in line]
    assert len(warning) == 1 and "manuals (3 documents)" in warning[0] and "language ID: en" in warning[0], p.stderr
    metrics = json.loads((project.root / "metrics/filter.json").read_text())
    assert metrics["documents_default_rules.manuals"] == 3
    assert "documents_default_rules.technical" not in metrics  # params.yaml names technical
