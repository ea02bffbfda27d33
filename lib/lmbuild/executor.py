"""Map a function over shards: one interface, two backends.

Data stages split their work into independent tasks (one per input shard or file) and call
`map_tasks(fn, tasks, common)`. Results come back in task order whatever order the tasks
finished in, and every task writes only its own, deterministically named files, so outputs are
byte-identical across backends and worker counts.

- `common.executor: local` runs a process pool of `common.workers` processes (1 = in-process,
  which is easiest to debug).
- `common.executor: dask` sends the tasks to a Dask distributed cluster: the scheduler at
  `common.dask.address`, or a LocalCluster of `common.workers` processes bound to 127.0.0.1
  when no address is given. Workers must be able to import lmbuild and see the same paths
  (shared storage), as for any Dask cluster.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Callable, Sequence

from tqdm import tqdm


def _progress(total: int, desc: str):
    return tqdm(total=total, desc=desc, unit="task", dynamic_ncols=True, mininterval=0.5,
                disable=os.environ.get("LMBUILD_NO_PROGRESS") == "1")


def map_tasks(fn: Callable[[Any], Any], tasks: Sequence[Any], common: dict, desc: str = "tasks",
              postfix: Callable[[Any], dict] | None = None) -> list[Any]:
    """Run fn(task) for every task and return the results in task order.

    `postfix(result)` may return counters (e.g. {"docs": n, "MiB": m}) that the progress bar sums.
    """
    backend = common.get("executor", "local")
    workers = max(1, int(common.get("workers", 1)))
    if backend == "dask":
        return _map_dask(fn, tasks, common, desc, postfix)
    if backend != "local":
        raise ValueError(f"params.yaml: common.executor: must be 'local' or 'dask', got {backend!r}")
    results: list[Any] = [None] * len(tasks)
    totals: dict[str, float] = {}
    with _progress(len(tasks), desc) as bar:
        def done(i: int, result: Any) -> None:
            results[i] = result
            if postfix is not None:
                for k, v in postfix(result).items():
                    totals[k] = totals.get(k, 0) + v
                bar.set_postfix({k: round(v, 1) for k, v in totals.items()}, refresh=False)
            bar.update(1)

        if workers == 1 or len(tasks) <= 1:
            for i, task in enumerate(tasks):
                done(i, fn(task))
            return results
        with ProcessPoolExecutor(max_workers=min(workers, len(tasks))) as pool:
            futures = {pool.submit(fn, task): i for i, task in enumerate(tasks)}
            for fut in as_completed(futures):
                done(futures[fut], fut.result())
    return results


def _map_dask(fn, tasks, common, desc, postfix) -> list[Any]:
    try:
        from dask.distributed import Client, LocalCluster, as_completed as dask_completed
    except ImportError:
        raise SystemExit("params.yaml: common.executor: 'dask' needs the dask extra: pip install -e '.[dask]'") from None
    dask_cfg = common.get("dask") or {}
    address = dask_cfg.get("address")
    cluster = None
    if address:
        client = Client(address)
    else:
        cluster = LocalCluster(n_workers=max(1, int(common.get("workers", 1))), threads_per_worker=1,
                               processes=True, host="127.0.0.1", dashboard_address=None,
                               memory_limit=dask_cfg.get("memory_limit", "auto"))
        client = Client(cluster)
    try:
        futures = client.map(fn, list(tasks), pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        results: list[Any] = [None] * len(tasks)
        totals: dict[str, float] = {}
        with _progress(len(tasks), desc) as bar:
            for fut in dask_completed(futures):
                result = fut.result()
                results[index[fut.key]] = result
                if postfix is not None:
                    for k, v in postfix(result).items():
                        totals[k] = totals.get(k, 0) + v
                    bar.set_postfix({k: round(v, 1) for k, v in totals.items()}, refresh=False)
                bar.update(1)
        return results
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
