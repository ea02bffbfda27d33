"""What the dedup stage shows people: the cluster-size histogram and a markdown sample of
clusters (the largest ones and some picked at random with the stage's seed)."""

from __future__ import annotations

import numpy as np


def size_histogram(root: np.ndarray) -> list[dict]:
    """Rows `size, clusters` over every cluster, singletons (unique documents) included."""
    if not len(root):
        return []
    sizes = np.bincount(root)
    sizes = sizes[sizes > 0]
    values, counts = np.unique(sizes, return_counts=True)
    return [{"size": int(s), "clusters": int(c)} for s, c in zip(values, counts)]


def pick_clusters(root: np.ndarray, largest: int, random: int, seed: int) -> list[tuple[int, str]]:
    """(cluster label, why) for the `largest` biggest clusters (ties: smaller label first) and
    `random` others of >= 2 documents drawn with the seed."""
    if not len(root):
        return []
    sizes = np.bincount(root)
    labels = np.flatnonzero(sizes >= 2)
    by_size = labels[np.lexsort((labels, -sizes[labels]))]
    chosen = [(int(c), "largest") for c in by_size[:largest]]
    rest = np.sort(by_size[largest:])
    if random and len(rest):
        picks = np.random.default_rng(seed).choice(len(rest), size=min(random, len(rest)), replace=False)
        chosen += [(int(c), "random") for c in rest[np.sort(picks)]]
    return chosen


def members_to_show(root: np.ndarray, keeper: np.ndarray, label: int, limit: int) -> tuple[np.ndarray, int]:
    """(global indices of the members to show, keeper first then by index; cluster size)."""
    members = np.flatnonzero(root == label)
    keep = keeper[members[0]]
    ordered = np.concatenate([[keep], members[members != keep]])
    return ordered[:limit], len(members)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def clusters_markdown(picked: list[dict], totals: dict, chars: int) -> str:
    """`picked`: one dict per cluster with label, why, size and members (dicts with id, source,
    status, text)."""
    lines = ["# Duplicate clusters", "",
             f"{totals['documents_in']} documents in, {totals['documents_kept']} kept; "
             f"{totals['clusters']} clusters of 2 or more documents, the largest has {totals['largest_cluster']}. "
             f"Each cluster below lists its keeper first, then removed members (exact: same normalised text "
             f"as the keeper; near: similar by MinHash LSH), with the first {chars} characters of each text.", ""]
    if not picked:
        lines += ["No duplicates found.", ""]
    for n, cluster in enumerate(picked, 1):
        shown = len(cluster["members"])
        more = f", {cluster['size'] - shown} more not shown" if cluster["size"] > shown else ""
        lines += [f"## {n}. {cluster['size']} documents ({cluster['why']}{more})", ""]
        for m in cluster["members"]:
            lines.append(f"- **{m['status']}** `{m['id']}` ({m['source']}): {_one_line(m['text'])}")
        lines.append("")
    return "\n".join(lines)
