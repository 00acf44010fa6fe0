"""Nearest-neighbour classification against a (compressed) embedding database."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.neighbors import KNeighborsClassifier

from mrsolve.compress.base import Compressed


def _numpy(name: str, x) -> np.ndarray:
    if isinstance(x, Compressed):
        x = x._dense()
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be an array, a tensor or a Compressed, got {type(x)}")
    return x


def knn_accuracy(
    database, database_labels, queries, query_labels, *, k: int = 1, metric: str = "euclidean"
) -> float:
    """Fraction of ``queries`` whose ``k``-nearest-neighbour vote in ``database`` is correct.

    Args:
        database: ``(N, D)`` embeddings (array, tensor, or a compressed matrix).
        database_labels: ``(N,)`` labels.
        queries: ``(M, D)`` query embeddings (uncompressed).
        query_labels: ``(M,)`` labels.
        k: neighbours in the vote.
        metric: any scikit-learn ``KNeighborsClassifier`` metric.
    """
    db, q = _numpy("database", database), _numpy("queries", queries)
    if db.ndim != 2 or q.ndim != 2 or db.shape[1] != q.shape[1]:
        raise ValueError(
            f"database and queries must be (N, D) and (M, D), got {db.shape} and {q.shape}"
        )
    clf = KNeighborsClassifier(n_neighbors=k, metric=metric)
    clf.fit(db, _numpy("database_labels", database_labels))
    return float(clf.score(q, _numpy("query_labels", query_labels)))
