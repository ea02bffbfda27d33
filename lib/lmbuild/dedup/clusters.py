"""Duplicate clusters: union-find over integer document indices, and the keeper of each cluster.

`Components` holds, for every document of the corpus (a global index 0..N-1), the smallest
index of its cluster. Edges arrive in batches (the exact-hash edges, then one band's LSH edges
at a time); a batch is merged by running scipy's connected components on the small graph of the
cluster representatives it touches, then relabelling: memory is O(documents) plus the batch,
and the result does not depend on the order of edges or batches (a component's label is its
smallest member). Transitivity is the point: A~B in one band and B~C in another put A, B and C
in one cluster even if A and C never share a bucket.

Keeper choice, deterministic and independent of file order or worker count: within a cluster,
the document that comes first by

1. `source_priority`: the position of its source in that list (earlier wins; sources not in the
   list come after all listed ones, equal among themselves);
2. the longer text (characters of the original text);
3. the smaller id (byte order of the id string);

is kept, and every other member is removed with `duplicate_of` = the keeper's id.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


class Components:
    """Connected components over documents 0..n-1, labelled by their smallest member."""

    def __init__(self, n: int):
        self.root = np.arange(n, dtype=np.int64)
        self.merged_edges = 0  # edges that joined two different clusters

    def merge(self, u: np.ndarray, v: np.ndarray) -> None:
        if not len(u):
            return
        ru, rv = self.root[u], self.root[v]
        differ = ru != rv
        ru, rv = ru[differ], rv[differ]
        if not len(ru):
            return
        nodes, inverse = np.unique(np.concatenate([ru, rv]), return_inverse=True)
        k = len(nodes)
        graph = coo_matrix((np.ones(len(ru), np.int8), (inverse[:len(ru)], inverse[len(ru):])), shape=(k, k))
        n_comp, label = connected_components(graph, directed=False)
        self.merged_edges += k - n_comp
        smallest = np.full(n_comp, np.iinfo(np.int64).max, np.int64)
        np.minimum.at(smallest, label, nodes)
        # relabel: every document whose root was touched gets its component's smallest root
        mapping = np.searchsorted(nodes, self.root)
        touched = (mapping < k) & (nodes[np.minimum(mapping, k - 1)] == self.root)
        self.root[touched] = smallest[label[mapping[touched]]]

    def sizes(self) -> np.ndarray:
        """Size of each document's cluster."""
        return np.bincount(self.root, minlength=len(self.root))[self.root]


def choose_keepers(root: np.ndarray, priority: np.ndarray, length: np.ndarray, id_rank: np.ndarray) -> np.ndarray:
    """The keeper (global index) of every document's cluster: smallest (priority, -length,
    id_rank) among the cluster's members."""
    n = len(root)
    if n == 0:
        return np.zeros(0, np.int64)
    order = np.lexsort((id_rank, -length.astype(np.int64), priority, root))
    r = root[order]
    new = np.empty(n, bool)
    new[0] = True
    np.not_equal(r[1:], r[:-1], out=new[1:])
    group = np.cumsum(new) - 1
    keeper = np.empty(n, np.int64)
    keeper[order] = order[np.flatnonzero(new)][group]
    return keeper
