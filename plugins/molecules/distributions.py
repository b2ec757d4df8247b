"""Distribution distances between generated and reference molecules (MiDi / EQGAT-style, ``molecules.md`` §2.2).

All take per-molecule arrays: ``types`` ``(N,)`` element indices, ``bonds`` ``(N, N)`` bond-type indices
(0 none, 1-3 orders, 4 aromatic), ``positions`` ``(N, 3)`` Angstrom.

- ``histogram_l1`` — Σ|p − q| of two normalised histograms (MiDi's "TV", an L1 distance in [0, 2]).
- ``bond_length_w1`` — Σ_y p_ref(y)·W1(lengths of bonds of type y), Angstrom.
- ``bond_angle_w1`` — Σ_x p_ref(x)·W1(angles j-i-k at atoms i of type x with ≥ 2 neighbours), degrees; p_ref(x)
  is the share of type x among reference atoms with ≥ 2 neighbours.
- ``valency_w1`` — Σ_x p_ref(x)·W1(valency of atoms of type x); aromatic bonds count 1.5.

W1 is ``scipy.stats.wasserstein_distance`` on the raw values (no binning). A type present in the reference
but absent from the generated set adds its weight times the W1 to an empty set, taken as the mean absolute
value of the reference values (the distance to a point mass at 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BOND_ORDER = np.array([0.0, 1.0, 2.0, 3.0, 1.5])


def histogram_l1(a: np.ndarray, b: np.ndarray) -> float:
    """Σ|a/Σa − b/Σb| for count vectors of equal length (0 when both are empty)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.sum() == 0 or b.sum() == 0:
        return float("nan") if a.sum() != b.sum() else 0.0
    return float(np.abs(a / a.sum() - b / b.sum()).sum())


def type_counts(types: Sequence[np.ndarray], k: int) -> np.ndarray:
    """``(k,)`` counts of atom types over all molecules."""
    return np.bincount(np.concatenate([np.asarray(t, dtype=np.int64) for t in types] or [np.zeros(0, np.int64)]), minlength=k)[:k]


def bond_counts(bonds: Sequence[np.ndarray], k: int = 5) -> np.ndarray:
    """``(k,)`` counts of bond types over unordered bonded pairs (entry 0, no bond, is left 0)."""
    out = np.zeros(k, dtype=np.int64)
    for b in bonds:
        b = np.asarray(b)
        v = b[np.triu_indices(len(b), 1)]
        out += np.bincount(v[v > 0], minlength=k)[:k]
    return out


def _w1(u: np.ndarray, v: np.ndarray) -> float:
    from scipy.stats import wasserstein_distance

    if len(v) == 0:
        return 0.0
    if len(u) == 0:
        return float(np.mean(np.abs(v)))
    return float(wasserstein_distance(u, v))


def _weighted_w1(gen: dict[int, list[float]], ref: dict[int, list[float]]) -> float:
    total = sum(len(v) for v in ref.values())
    if total == 0:
        return float("nan")
    return float(sum(len(r) / total * _w1(np.asarray(gen.get(k, []), dtype=np.float64), np.asarray(r, dtype=np.float64))
                     for k, r in ref.items() if len(r)))


def bond_lengths(bonds: Sequence[np.ndarray], positions: Sequence[np.ndarray]) -> dict[int, list[float]]:
    """Bond type -> lengths (Angstrom) of every bond of that type."""
    out: dict[int, list[float]] = {}
    for b, x in zip(bonds, positions):
        b, x = np.asarray(b), np.asarray(x, dtype=np.float64)
        i, j = np.nonzero(np.triu(b, 1))
        d = np.linalg.norm(x[i] - x[j], axis=-1)
        for t, v in zip(b[i, j].tolist(), d.tolist()):
            out.setdefault(int(t), []).append(v)
    return out


def bond_angles(types: Sequence[np.ndarray], bonds: Sequence[np.ndarray], positions: Sequence[np.ndarray]) -> dict[int, list[float]]:
    """Atom type -> angles (degrees) j-i-k over all neighbour pairs j < k of atoms i with ≥ 2 neighbours."""
    out: dict[int, list[float]] = {}
    for t, b, x in zip(types, bonds, positions):
        b, x = np.asarray(b), np.asarray(x, dtype=np.float64)
        for i in range(len(b)):
            nb = np.nonzero(b[i])[0]
            if len(nb) < 2:
                continue
            v = x[nb] - x[i]
            v = v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)
            jj, kk = np.triu_indices(len(nb), 1)
            cos = np.clip((v[jj] * v[kk]).sum(-1), -1.0, 1.0)
            out.setdefault(int(t[i]), []).extend(np.degrees(np.arccos(cos)).tolist())
    return out


def valencies(types: Sequence[np.ndarray], bonds: Sequence[np.ndarray]) -> dict[int, list[float]]:
    """Atom type -> valency (sum of bond orders, aromatic 1.5) of every atom of that type."""
    out: dict[int, list[float]] = {}
    for t, b in zip(types, bonds):
        val = BOND_ORDER[np.asarray(b)].sum(-1)
        for k, v in zip(np.asarray(t).tolist(), val.tolist()):
            out.setdefault(int(k), []).append(v)
    return out


def bond_length_w1(gen_bonds, gen_pos, ref_bonds, ref_pos) -> float:
    """Σ_y p_ref(y)·W1 of the bond lengths of type y (Angstrom)."""
    return _weighted_w1(bond_lengths(gen_bonds, gen_pos), bond_lengths(ref_bonds, ref_pos))


def bond_angle_w1(gen_types, gen_bonds, gen_pos, ref_types, ref_bonds, ref_pos) -> float:
    """Σ_x p_ref(x)·W1 of the bond angles at atoms of type x (degrees)."""
    g, r = bond_angles(gen_types, gen_bonds, gen_pos), bond_angles(ref_types, ref_bonds, ref_pos)
    # weight by atoms (not angles): the share of type-x centres among reference atoms with >= 2 neighbours
    centres: dict[int, int] = {}
    for t, b in zip(ref_types, ref_bonds):
        deg = (np.asarray(b) > 0).sum(-1)
        for k in np.asarray(t)[deg >= 2].tolist():
            centres[int(k)] = centres.get(int(k), 0) + 1
    total = sum(centres.values())
    if total == 0:
        return float("nan")
    return float(sum(c / total * _w1(np.asarray(g.get(k, [])), np.asarray(r[k])) for k, c in centres.items()))


def valency_w1(gen_types, gen_bonds, ref_types, ref_bonds) -> float:
    """Σ_x p_ref(x)·W1 of the valencies of atoms of type x."""
    return _weighted_w1(valencies(gen_types, gen_bonds), valencies(ref_types, ref_bonds))


__all__ = ["bond_angle_w1", "bond_angles", "bond_counts", "bond_length_w1", "bond_lengths", "histogram_l1", "type_counts",
           "valencies", "valency_w1"]
