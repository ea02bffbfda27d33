"""The report stage's library: gather the evaluation results of every model stage into one
metrics file, render the pipeline's plot data and training curves to PNG images, and write a
markdown report and a self-contained HTML page (images inlined, no external URLs).

  collect.py   read inputs: data/eval/<stage>/metrics.json, contamination, dvclive TSVs, CSVs
  figures.py   matplotlib (Agg) figures, rendered to deterministic PNG bytes
  render.py    the report as a list of blocks, written as markdown and as HTML
  run.py       `build_report(params, root)`: the stage's work, outputs written atomically
"""

from .collect import ReportError
from .run import build_report

__all__ = ["ReportError", "build_report"]
