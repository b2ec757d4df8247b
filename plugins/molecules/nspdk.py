"""NSPDK MMD (GDSS protocol): EDeN's ``vectorize(complexity=4, discrete=True)`` feature vectors of molecular graphs
(node label = element symbol, edge label = integer bond order of the kekulised molecule), a linear kernel, and

    MMD² = mean K(X, X) + mean K(Y, Y) − 2 mean K(X, Y).

EDeN (``eden-kernel``, the original NSPDK implementation) normalises each graph's feature vector, so K(g, g) = 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from polydiff.errors import MissingExtraError


def mol_to_nx(mol: Any) -> Any:
    """A networkx graph of an RDKit Mol: nodes labelled by symbol, edges by integer bond order (kekulised if possible)."""
    import networkx as nx
    from rdkit import Chem

    m = Chem.Mol(mol)
    try:
        Chem.Kekulize(m, clearAromaticFlags=True)
    except Exception:  # noqa: BLE001 - leave aromatic bonds (order 1) when kekulisation fails
        pass
    g = nx.Graph()
    for a in m.GetAtoms():
        g.add_node(a.GetIdx(), label=a.GetSymbol())
    for b in m.GetBonds():
        g.add_edge(b.GetBeginAtomIdx(), b.GetEndAtomIdx(), label=int(b.GetBondTypeAsDouble()))
    return g


def nspdk_features(graphs: Sequence[Any]) -> Any:
    """``(len(graphs), 2**16 + 1)`` scipy sparse matrix of normalised NSPDK features."""
    try:
        from eden.graph import vectorize
    except ImportError:
        raise MissingExtraError("eden-kernel", "molecules") from None
    return vectorize(list(graphs), complexity=4, discrete=True)


def mmd_linear(x: Any, y: Any) -> float:
    """MMD² with a linear kernel between the rows of ``x`` ``(n, d)`` and ``y`` ``(m, d)`` (dense or scipy sparse)."""
    return _mean(x @ x.T) + _mean(y @ y.T) - 2.0 * _mean(x @ y.T)


def _mean(k: Any) -> float:
    return float(np.asarray(k.mean()))


def nspdk_mmd(graphs_a: Sequence[Any], graphs_b: Sequence[Any]) -> float:
    """NSPDK MMD² between two sets of networkx graphs (nan when one is empty)."""
    if not graphs_a or not graphs_b:
        return float("nan")
    return mmd_linear(nspdk_features(graphs_a), nspdk_features(graphs_b))


__all__ = ["mmd_linear", "mol_to_nx", "nspdk_features", "nspdk_mmd"]
