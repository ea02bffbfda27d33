"""The executor returns results in task order whatever the backend and worker count."""

from __future__ import annotations

import pytest

from lmbuild.executor import map_tasks

TASKS = ["x" * n for n in (5, 1, 9, 3, 7, 2, 8)]


@pytest.mark.parametrize("workers", [1, 2])
def test_local_results_in_task_order(workers):
    assert map_tasks(len, TASKS, {"executor": "local", "workers": workers}) == [5, 1, 9, 3, 7, 2, 8]


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="common.executor"):
        map_tasks(len, TASKS, {"executor": "ray", "workers": 2})


@pytest.mark.slow
def test_dask_local_cluster_on_loopback():
    pytest.importorskip("distributed")
    assert map_tasks(len, TASKS, {"executor": "dask", "workers": 2, "dask": {}}) == [5, 1, 9, 3, 7, 2, 8]


def test_worker_errors_propagate():
    with pytest.raises(TypeError):
        map_tasks(len, [1, 2], {"executor": "local", "workers": 2})
