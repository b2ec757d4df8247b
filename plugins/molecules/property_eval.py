"""EDM's protocol for property-conditioned generation (Hoogeboom et al. 2022, Table 3).

A property predictor (an invariant EGNN regressor, trained separately on the first half of the training
molecules in EDM; here on the molecules given) scores molecules generated for target values ``c``:

* ``generated``: MAE between the predictor's value on a molecule generated for ``c`` and ``c``;
* ``upper bound`` (``shuffled``): MAE of the predictor on real held-out molecules against the targets of
  *other* molecules (a model that ignores the condition scores about this);
* ``lower bound`` (``real``): MAE of the predictor on real held-out molecules against their own values
  (the predictor's error; no generator can be scored below it).

Targets are the held-out molecules' own property values, so the generated set has the data's distribution
of targets (and of atom counts, when the caller passes each molecule's count).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .backbones import EGNNLayer, Edges, build_edges, rbf, scatter_sum
from .tasks import collate_molecules


class PropertyPredictor(nn.Module):
    """An E(3)-invariant regressor: EGNN layers on the clean molecule, sum-pooled scalars -> one value per molecule.

    Called as ``net(batch)`` with a :class:`~polydiff_molecules.tasks.MoleculeBatch`; returns ``(B,)`` in the
    normalised units ``(y - mean) / std`` of :attr:`mean` and :attr:`std`.
    """

    def __init__(self, atom_classes: int, charge_classes: int, *, hidden: int = 64, layers: int = 4, mean: float = 0.0,
                 std: float = 1.0) -> None:
        super().__init__()
        self.atom_classes, self.charge_classes = int(atom_classes), int(charge_classes)
        self.embed = nn.Linear(self.atom_classes + self.charge_classes, hidden)
        from .backbones import RBF_CENTRES

        self.layers = nn.ModuleList([EGNNLayer(hidden, RBF_CENTRES) for _ in range(layers)])
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 1))
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def forward(self, batch: Any) -> Tensor:
        pos, seg = batch.pos, batch.segment_ids
        b = batch.num_molecules
        h = self.embed(torch.cat([nn.functional.one_hot(batch.atom_types, self.atom_classes),
                                  nn.functional.one_hot(batch.charges, self.charge_classes)], -1).to(pos.dtype))
        edges: Edges = build_edges(pos, seg, b, max_fully_connected=1 << 30, cutoff=0.0)
        attr = rbf((pos[edges.dst] - pos[edges.src]).pow(2).sum(-1, keepdim=True))
        x = pos
        for layer in self.layers:
            h, x = layer(h, x, edges, attr)  # x is not read out: the value depends on invariants only
        return self.head(scatter_sum(h, seg, b)).squeeze(-1)

    def predict(self, mols: Sequence[Any], *, batch_size: int = 256) -> Tensor:
        """Property values in the data's units for ``Molecule`` objects, ``(len(mols),)`` float64."""
        out = []
        p = next(self.parameters())
        with torch.no_grad():
            for i in range(0, len(mols), batch_size):
                batch = collate_molecules(mols[i:i + batch_size], dtype=p.dtype).to(p.device)
                out.append((self(batch) * self.std + self.mean).to(torch.float64).cpu())
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def train_property_predictor(mols: Sequence[Any], prop: str, *, atom_classes: int, charge_classes: int, steps: int = 2000,
                             batch_size: int = 64, lr: float = 1e-3, hidden: int = 64, layers: int = 4, seed: int = 0) -> PropertyPredictor:
    """Fit a :class:`PropertyPredictor` to ``mols``' property ``prop`` (L1 loss on normalised values, AdamW, cosine lr)."""
    y = torch.tensor([float(m.properties[prop]) for m in mols], dtype=torch.float64)
    net = PropertyPredictor(atom_classes, charge_classes, hidden=hidden, layers=layers, mean=float(y.mean()),
                            std=float(y.std().clamp(min=1e-12)))
    opt = torch.optim.AdamW(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    g = torch.Generator().manual_seed(seed)
    z = ((y - y.mean()) / y.std().clamp(min=1e-12)).to(torch.float32)
    for _ in range(steps):
        idx = torch.randint(0, len(mols), (min(batch_size, len(mols)),), generator=g)
        batch = collate_molecules([mols[int(i)] for i in idx])
        loss = (net(batch) - z[idx]).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


@dataclass(frozen=True)
class PropertyMAE:
    """The three numbers of EDM's table (in the property's units) and the number of molecules scored."""

    generated: float
    shuffled: float
    real: float
    num: int

    def as_dict(self, prop: str) -> dict[str, float]:
        return {f"property/{prop}/mae_generated": self.generated, f"property/{prop}/mae_shuffled_upper_bound": self.shuffled,
                f"property/{prop}/mae_real_lower_bound": self.real, f"property/{prop}/num": float(self.num)}


def property_mae(predictor: PropertyPredictor, generated: Sequence[Any], targets: Tensor, held_out: Sequence[Any], prop: str, *,
                 seed: int = 0) -> PropertyMAE:
    """The protocol of the module docstring: ``generated[i]`` was generated for ``targets[i]``; ``held_out`` are real molecules."""
    targets = targets.to(torch.float64)
    pred_gen = predictor.predict(list(generated))
    real_y = torch.tensor([float(m.properties[prop]) for m in held_out], dtype=torch.float64)
    pred_real = predictor.predict(list(held_out))
    perm = torch.randperm(len(held_out), generator=torch.Generator().manual_seed(seed))
    return PropertyMAE(generated=float((pred_gen - targets).abs().mean()), shuffled=float((pred_real - real_y[perm]).abs().mean()),
                       real=float((pred_real - real_y).abs().mean()), num=len(generated))


__all__ = ["PropertyMAE", "PropertyPredictor", "property_mae", "train_property_predictor"]
