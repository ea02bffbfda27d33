"""The shared main() of the training stage scripts: run the job, turn the errors a user can fix
into one line and an exit code, and write metrics on the main process only."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from ..metrics import write_metrics
from ..params import stage_errors
from .checkpoint import CheckpointError
from .data import DataError
from .model import ModelError
from .trainer import Stopped, TrainError


def is_main_process() -> bool:
    from accelerate import PartialState
    return PartialState().is_main_process


def run_training_stage(stage: str, work: Callable[[], dict], metrics_path: Path,
                       summary: Callable[[dict], str]) -> None:
    """Exit 3 after LMBUILD_STOP_AFTER_STEPS, 2 on bad params or inputs (one line, no traceback:
    lmbuild.params.stage_errors, as the data stages)."""
    try:
        with stage_errors(stage, TrainError, DataError, ModelError, CheckpointError, ValueError, OSError):
            metrics = work()
    except Stopped as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(3) from None
    if metrics["world_size"] == 1 or is_main_process():
        write_metrics(metrics_path, metrics)
        print(summary(metrics), file=sys.stderr)
