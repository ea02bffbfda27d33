"""The shared main() of the training stage scripts: run the job, turn the errors a user can fix
into one line and an exit code, and write metrics on the main process only."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from ..metrics import write_metrics
from ..params import ParamsError, exit_on_params_error
from .checkpoint import CheckpointError
from .data import DataError
from .model import ModelError
from .trainer import Stopped, TrainError


def is_main_process() -> bool:
    from accelerate import PartialState
    return PartialState().is_main_process


def run_training_stage(stage: str, work: Callable[[], dict], metrics_path: Path,
                       summary: Callable[[dict], str]) -> None:
    """Exit 3 after LMBUILD_STOP_AFTER_STEPS, 2 on bad params or inputs (one line, no traceback)."""
    try:
        metrics = work()
    except Stopped as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(3) from None
    except ParamsError as exc:
        exit_on_params_error(stage, exc)
    except (TrainError, DataError, ModelError, CheckpointError, ValueError, OSError) as exc:
        print(f"{stage}: {exc}" if not str(exc).startswith(stage) else exc, file=sys.stderr)
        raise SystemExit(2) from None
    if metrics["world_size"] == 1 or is_main_process():
        write_metrics(metrics_path, metrics)
        print(summary(metrics), file=sys.stderr)
