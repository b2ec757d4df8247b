"""2D molecular-graph recipes ``molecules/digress`` and ``molecules/gdss`` (no coordinates).

* ``molecules/digress`` (DiGress, Vignac et al. 2023): the core's product of three ``marginal`` categorical
  processes — atom types, formal charges and bond types including "no bond" on the unordered atom pairs of each
  molecule (a ragged upper triangle, so bonds are symmetric by construction) — with the training set's type
  frequencies as limits, ``x0`` prediction trained by cross-entropy (loss weights atoms 1, charges 1, bonds 5 as
  DiGress's λ), a graph transformer (:class:`~.graph2d.DigressNet`), the atom count drawn from the training
  set's ``p(N)``, sampled with the core's ``mixed-ancestral`` sampler.
* ``molecules/gdss`` (GDSS, Jo et al. 2022): the core's product of two Gaussian processes — one-hot atom types
  ``X`` ``(B, L, K)`` in a :class:`~polydiff.spaces.MaskedSpace` and the bond-order adjacency ``A`` ``(B, L, L)``
  in a :class:`~polydiff.spaces.SymmetricMatrixSpace` (noise on the upper triangle, mirrored; diagonal and
  padding zero) — node flags from ``p(N)``, a permutation-equivariant graph transformer reading ``X``, ``A``
  and ``A^2`` (:class:`~.graph2d.GDSSNet`), ``eps`` (score) or ``x0`` prediction; decoding thresholds ``A`` at
  0.5 / 1.5 / 2.5 into bond orders and takes the argmax of ``X``; charges follow GDSS's construction rule
  (N / O one above valence become +1).

Both decode in two named variants: ``raw`` (as generated) and ``valency-corrected`` (bonds lowered at
over-valent atoms, :func:`~.graph2d.correct_valency`). ``polydiff evaluate`` reports every metric for both,
keys suffixed ``@raw`` and ``@valency-corrected``; ``sample.decode`` says which one ``polydiff sample`` writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import nn

import polydiff
from polydiff import processes
from polydiff.errors import UserInputError
from polydiff.recipes import DataBundle, EvalConfig as BaseEvalConfig, RunDir, SampleConfig, SampleOption, TrainConfig

from .config import DataConfig, DiscreteKernel, DiscreteSchedule
from .recipes import MoleculeRecipe, _ListDataset, categorical_process
from .tasks import draw_atom_counts, pair_index

GaussianName = Literal["vp-cosine", "vp-linear", "ve"]
BOND_ORDERS_2D = (0.0, 1.0, 2.0, 3.0, 1.5)


@dataclass(frozen=True)
class DigressModelConfig:
    """``model`` of ``molecules/digress``: the categorical kernels, schedules and loss weights per field, and the graph
    transformer (``hidden`` x ``layers``, ``heads`` attention heads)."""

    atom_kernel: DiscreteKernel = "marginal"
    charge_kernel: DiscreteKernel = "marginal"
    bond_kernel: DiscreteKernel = "marginal"
    schedule: DiscreteSchedule = "cosine"
    atom_weight: float = 1.0
    charge_weight: float = 1.0
    bond_weight: float = 5.0
    hidden: int = 64
    layers: int = 4
    heads: int = 4
    time_dim: int = 16


@dataclass(frozen=True)
class GDSSModelConfig:
    """``model`` of ``molecules/gdss``: the Gaussian schedules of ``X`` and ``A`` (``ve`` with ``x_sigma_max`` /
    ``adj_sigma_max``), what the network predicts (``eps`` = the score up to ``-1/sigma``, GDSS's objective; or
    ``x0``), the loss weights, the graph transformer."""

    x_schedule: GaussianName = "vp-cosine"
    adj_schedule: GaussianName = "vp-cosine"
    x_sigma_max: float = 1.0
    adj_sigma_max: float = 3.0
    prediction: Literal["eps", "x0"] = "eps"
    x_weight: float = 1.0
    adj_weight: float = 1.0
    hidden: int = 64
    layers: int = 4
    heads: int = 4
    time_dim: int = 16


@dataclass(frozen=True)
class Graph2DSampleConfig(SampleConfig):
    """``sample``: the mixed ancestral sampler, and which decoding ``polydiff sample`` writes (``raw`` or
    ``valency-corrected``)."""

    sampler: str = "mixed-ancestral"
    steps: int = 100
    batch_size: int = 256
    decode: Literal["raw", "valency-corrected"] = "valency-corrected"


@dataclass(frozen=True)
class Graph2DEvalConfig(BaseEvalConfig):
    """``eval``: samples drawn by ``polydiff evaluate`` (without ``--samples``), their steps, reference (test) molecules
    for FCD / NSPDK / TV, and whether FCD and NSPDK are computed."""

    num_samples: int = 256
    steps: int = 100
    reference_molecules: int = 1000
    fcd_nspdk: bool = True


def _train() -> TrainConfig:
    return TrainConfig(steps=20000, batch_size=256, lr=1e-3, warmup_steps=200, bf16=False, ema_decay=0.999, checkpoint_every=2000)


@dataclass(frozen=True)
class DigressConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: DigressModelConfig = field(default_factory=DigressModelConfig)
    train: TrainConfig = field(default_factory=_train)
    sample: Graph2DSampleConfig = field(default_factory=Graph2DSampleConfig)
    eval: Graph2DEvalConfig = field(default_factory=Graph2DEvalConfig)


@dataclass(frozen=True)
class GDSSConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: GDSSModelConfig = field(default_factory=GDSSModelConfig)
    train: TrainConfig = field(default_factory=_train)
    sample: Graph2DSampleConfig = field(default_factory=Graph2DSampleConfig)
    eval: Graph2DEvalConfig = field(default_factory=Graph2DEvalConfig)


PRESETS_2D: dict[str, dict[str, Any]] = {
    "tiny": {"data.max_molecules": 2000, "data.val_molecules": 64, "train.steps": 300, "train.batch_size": 64,
             "train.warmup_steps": 20, "train.lr": 2e-3, "train.checkpoint_every": 300, "train.log_every": 25,
             "train.ema_decay": 0.99, "model.hidden": 32, "model.layers": 2, "sample.steps": 50, "sample.num": 16,
             "eval.num_samples": 64, "eval.steps": 50, "eval.reference_molecules": 256},
    "small": {"data.max_molecules": 0, "train.steps": 4000, "train.batch_size": 256, "model.hidden": 64, "model.layers": 4,
              "sample.steps": 250, "eval.num_samples": 1000, "eval.steps": 250, "eval.reference_molecules": 2000},
    "base": {"train.steps": 100000, "train.batch_size": 512, "model.hidden": 256, "model.layers": 8,
             "sample.steps": 500, "eval.num_samples": 10000, "eval.steps": 500, "eval.reference_molecules": 10000},
}


class DecodedMolecules(list):
    """Molecules already decoded in the named ``variant`` (``polydiff sample --decode``): written as they are."""

    def __init__(self, mols: Any, variant: str) -> None:
        super().__init__(mols)
        self.variant = variant


@dataclass(frozen=True)
class Graph2DBatch:
    """Molecules collated for a 2D recipe: the clean state, its space and the network's conditioning."""

    state: Any
    space: Any
    cond: dict[str, torch.Tensor]
    num: int

    def to(self, device: Any) -> Graph2DBatch:
        from polydiff.state import StateDict

        st = StateDict({k: v.to(device) for k, v in self.state.items()})
        return Graph2DBatch(st, self.space, {k: v.to(device) for k, v in self.cond.items()}, self.num)


class Graph2DRecipe(MoleculeRecipe):
    """Shared parts of the 2D recipes (module docstring): data and statistics as the 3D recipes, no coordinates."""

    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = PRESETS_2D
    sample_options: ClassVar[tuple[SampleOption, ...]] = (
        SampleOption("decode", str, None, "raw or valency-corrected (default sample.decode)"),
    )

    def collate(self, mols: list[Any], num_atom_classes: int, device: Any = "cpu", dtype: torch.dtype = torch.float32) -> Graph2DBatch:
        raise NotImplementedError

    def datasets(self, cfg: Any, run: RunDir) -> DataBundle:
        stats = self.stats(cfg, run)
        train, _ = self._load(cfg, "train")
        val = None
        if not cfg.data.path and cfg.train.eval_every > 0:
            val, _ = self._load(cfg, "valid")
        k = len(stats["elements"])
        recipe = self
        return DataBundle(train=_ListDataset(train), val=_ListDataset(val) if val else None,
                          collate=lambda items: recipe.collate(items, k))

    def model_config(self, cfg: Any) -> Any:
        return cfg.model

    def loss(self, model: nn.Module, batch: Any, cfg: Any, generator: Any = None) -> torch.Tensor:
        return model.loss(batch.state, cond=batch.cond, space=batch.space, generator=generator,  # type: ignore[operator]
                          discrete_objective="ce").loss

    def nll(self, *a: Any, **k: Any) -> dict[str, float]:  # no likelihood for the 2D recipes
        return {}

    def sample(self, model: nn.Module, cfg: Any, run: RunDir, *, num: int, sampler: str, steps: int, seed: int,
               options: Mapping[str, Any]) -> Any:
        """``num`` raw molecules (sample ``i`` from generator ``mix_seed(seed, i)``: independent of the batch);
        ``options["decode"]`` is applied when the samples are written."""
        from polydiff.samplers import sample_in_chunks

        stats = self.stats(cfg, run)
        hist = torch.tensor(stats["atom_count_histogram"], dtype=torch.float64)
        p = next(model.parameters())
        model.eval()
        graphs: list[dict[str, torch.Tensor]] = []

        def draw(chunk: Any) -> Any:
            sizes = draw_atom_counts(hist, chunk.generators)
            tpl = self.template(sizes, len(stats["elements"]), p.device, p.dtype)
            res = polydiff.sample(model, like=tpl.state, space=tpl.space, cond=tpl.cond, sampler=sampler, steps=steps,
                                  generator=chunk.generators)
            graphs.extend(self.split(res.x, tpl))
            return torch.zeros(chunk.size), int(res.nfe)

        with torch.no_grad():
            sample_in_chunks(draw, num=num, batch_size=cfg.sample.batch_size, seed=seed, device=p.device)
        mols = self.to_molecules(graphs, stats)
        variant = options.get("decode")
        if variant is None:
            return mols
        from .graph2d import decode_variant

        return DecodedMolecules(decode_variant(mols, self.vocabulary(stats), str(variant)), str(variant))

    def template(self, sizes: torch.Tensor, k: int, device: Any, dtype: torch.dtype) -> Graph2DBatch:
        raise NotImplementedError

    def split(self, x: Any, tpl: Graph2DBatch) -> list[dict[str, torch.Tensor]]:
        raise NotImplementedError

    def to_molecules(self, graphs: list[dict[str, torch.Tensor]], stats: Mapping[str, Any]) -> list[Any]:
        from .data import Molecule

        out = []
        for g in graphs:
            n = int(g["atom_types"].shape[0])
            out.append(Molecule(g["atom_types"], g["charges"], torch.zeros(n, 3, dtype=torch.float64), g["bonds"]))
        return out

    def write_samples(self, samples: Any, out_dir: Path, cfg: Any, run: RunDir) -> list[Path]:
        """SDF (2D: zero coordinates, bonds and charges), SMILES list and PNG grid of the ``sample.decode`` variant
        (samples already decoded by ``--decode`` are written as they are)."""
        from . import writers
        from .graph2d import decode_variant

        stats = self.stats(cfg, run)
        vocab = self.vocabulary(stats)
        mols = list(samples) if isinstance(samples, DecodedMolecules) else decode_variant(list(samples), vocab, cfg.sample.decode)
        return writers.write_molecules(mols, Path(out_dir), vocab, bonds="model", views_3d=False)

    def evaluate(self, model: nn.Module, cfg: Any, run: RunDir, samples_dir: Path | None) -> dict[str, float]:
        """Every metric of ``metrics.evaluate_molecules`` (bonds from the model) twice: on the raw molecules (``@raw``)
        and after valency correction (``@valency-corrected``), against the QM9 test split (or the user's data)."""
        from . import writers

        stats = self.stats(cfg, run)
        vocab = self.vocabulary(stats)
        if samples_dir is not None:
            generated = writers.read_molecules(Path(samples_dir), vocab)
        else:
            generated = self.sample(model, cfg, run, num=cfg.eval.num_samples, sampler=cfg.sample.sampler, steps=cfg.eval.steps,
                                    seed=cfg.eval.seed, options={})
        if cfg.data.path:
            reference, _ = self._load(cfg, "train")
        else:
            from . import data

            reference, _ = data.load_qm9(hydrogens=cfg.data.hydrogens, split="test", max_molecules=cfg.eval.reference_molecules)
        return evaluate_2d(generated, reference, stats.get("train_smiles", []), vocab, fcd_nspdk=cfg.eval.fcd_nspdk)


def evaluate_2d(generated: list[Any], reference: list[Any], train_smiles: Any, vocab: Any, *, fcd_nspdk: bool = True) -> dict[str, float]:
    """``metrics.evaluate_molecules`` on the ``raw`` and the ``valency-corrected`` molecules, keys suffixed ``@variant``
    (``validity/largest_fragment/model@raw`` is GDSS's "validity w/o correction")."""
    from . import metrics
    from .graph2d import DECODE_VARIANTS, decode_variant

    out: dict[str, float] = {}
    train = list(train_smiles)
    for variant in DECODE_VARIANTS:
        mols = decode_variant(generated, vocab, variant)
        res = metrics.evaluate_molecules(mols, reference, train, vocab, bonds="model", fcd_nspdk=fcd_nspdk, correct=False)
        out.update({f"{k}@{variant}": v for k, v in res.items()})
    return out


class DigressRecipe(Graph2DRecipe):
    """DiGress-style discrete 2D graph diffusion (module docstring)."""

    name: ClassVar[str] = "molecules/digress"
    description: ClassVar[str] = "DiGress-style 2D molecular graphs: marginal categorical atoms, charges and bonds; graph transformer"
    config_class: ClassVar[type] = DigressConfig

    def build_model(self, cfg: Any, run: RunDir) -> nn.Module:
        from .graph2d import DigressNet

        stats = self.stats(cfg, run)
        m: DigressModelConfig = cfg.model
        counts = {k: torch.tensor(v, dtype=torch.float64) for k, v in stats["counts"].items()}
        comps = {"atom_types": categorical_process(m.atom_kernel, m.schedule, counts["atom_types"]),
                 "charges": categorical_process(m.charge_kernel, m.schedule, counts["charges"]),
                 "bonds": categorical_process(m.bond_kernel, m.schedule, counts["bonds"])}
        process = processes.ProductProcess(comps, {"atom_types": m.atom_weight, "charges": m.charge_weight, "bonds": m.bond_weight})
        c = process.components
        net = DigressNet(c["atom_types"].num_states, c["charges"].num_states, c["bonds"].num_states, c["atom_types"].vocab_size,
                         c["charges"].vocab_size, c["bonds"].vocab_size, hidden=m.hidden, layers=m.layers, heads=m.heads,
                         time_dim=m.time_dim)
        return polydiff.Denoiser(net, process, prediction={k: "x0_logits" for k in c})

    def collate(self, mols: list[Any], num_atom_classes: int, device: Any = "cpu", dtype: torch.dtype = torch.float32) -> Graph2DBatch:
        from polydiff.state import StateDict

        from .graph2d import ragged2d_space

        sizes = torch.tensor([m.num_atoms for m in mols], dtype=torch.int64)
        seg = torch.repeat_interleave(torch.arange(len(mols)), sizes)
        bond_index, edge_seg = pair_index(sizes)
        bonds = []
        for m in mols:
            iu = torch.triu_indices(m.num_atoms, m.num_atoms, offset=1)
            bonds.append(m.bonds[iu[0], iu[1]].to(torch.int64))
        state = StateDict({"atom_types": torch.cat([m.atom_types.to(torch.int64) for m in mols]),
                           "charges": torch.cat([m.charges.to(torch.int64) for m in mols]),
                           "bonds": torch.cat(bonds) if bonds else torch.zeros(0, dtype=torch.int64)})
        return Graph2DBatch(state, ragged2d_space(seg, len(mols), edge_seg), {"segment_ids": seg, "bond_index": bond_index},
                            len(mols)).to(device)

    def template(self, sizes: torch.Tensor, k: int, device: Any, dtype: torch.dtype) -> Graph2DBatch:
        from polydiff.state import StateDict

        from .graph2d import ragged2d_space

        seg = torch.repeat_interleave(torch.arange(int(sizes.shape[0])), sizes)
        bond_index, edge_seg = pair_index(sizes)
        n, e = int(sizes.sum()), int(bond_index.shape[1])
        state = StateDict({"atom_types": torch.zeros(n, dtype=torch.int64), "charges": torch.zeros(n, dtype=torch.int64),
                           "bonds": torch.zeros(e, dtype=torch.int64)})
        b = Graph2DBatch(state, ragged2d_space(seg, int(sizes.shape[0]), edge_seg), {"segment_ids": seg, "bond_index": bond_index},
                         int(sizes.shape[0]))
        b.cond["sizes"] = sizes
        return b.to(device)

    def split(self, x: Any, tpl: Graph2DBatch) -> list[dict[str, torch.Tensor]]:
        sizes = tpl.cond["sizes"].cpu()
        seg_e = tpl.cond["segment_ids"].cpu()[tpl.cond["bond_index"][0].cpu()]
        bi = tpl.cond["bond_index"].cpu()
        at, ch, bo = x["atom_types"].cpu(), x["charges"].cpu(), x["bonds"].cpu()
        starts = torch.cumsum(sizes, 0) - sizes
        out = []
        for k, (s, n) in enumerate(zip(starts.tolist(), sizes.tolist())):
            adj = torch.zeros(n, n, dtype=torch.int64)
            sel = seg_e == k
            i, j = bi[:, sel] - s
            adj[i, j] = bo[sel]
            adj[j, i] = bo[sel]
            out.append({"atom_types": at[s:s + n].clone(), "charges": ch[s:s + n].clone(), "bonds": adj})
        return out


class GDSSRecipe(Graph2DRecipe):
    """GDSS-style continuous 2D graph diffusion on (X, A) (module docstring)."""

    name: ClassVar[str] = "molecules/gdss"
    description: ClassVar[str] = "GDSS-style 2D molecular graphs: Gaussian one-hot atoms X and symmetric bond-order adjacency A"
    config_class: ClassVar[type] = GDSSConfig

    def build_model(self, cfg: Any, run: RunDir) -> nn.Module:
        from .graph2d import GDSSNet

        stats = self.stats(cfg, run)
        m: GDSSModelConfig = cfg.model
        if m.x_sigma_max <= 0 or m.adj_sigma_max <= 0:
            raise UserInputError("model.x_sigma_max / model.adj_sigma_max: must be > 0")

        def gauss(name: str, sigma_max: float) -> processes.GaussianProcess:
            return processes.get(name, sigma_min=0.01, sigma_max=sigma_max) if name == "ve" else processes.get(name)  # type: ignore[return-value]

        process = processes.ProductProcess({"x": gauss(m.x_schedule, m.x_sigma_max), "adj": gauss(m.adj_schedule, m.adj_sigma_max)},
                                           {"x": m.x_weight, "adj": m.adj_weight})
        net = GDSSNet(len(stats["elements"]), hidden=m.hidden, layers=m.layers, heads=m.heads, time_dim=m.time_dim)
        from .graph2d import ClampedDenoiser

        return ClampedDenoiser(net, process, {"x": m.prediction, "adj": m.prediction},
                               {"x": (0.0, 1.0), "adj": (0.0, max(BOND_ORDERS_2D))})

    def collate(self, mols: list[Any], num_atom_classes: int, device: Any = "cpu", dtype: torch.dtype = torch.float32) -> Graph2DBatch:
        from .graph2d import dense_graphs, gdss_space

        state, mask = dense_graphs(mols, num_atom_classes, dtype=dtype)
        return Graph2DBatch(state, gdss_space(mask), {"node_mask": mask}, len(mols)).to(device)

    def template(self, sizes: torch.Tensor, k: int, device: Any, dtype: torch.dtype) -> Graph2DBatch:
        from polydiff.state import StateDict

        from .graph2d import gdss_space

        width = max(int(sizes.max()), 1) if sizes.numel() else 1
        mask = (torch.arange(width)[None, :] < sizes[:, None]).to(device)
        b = int(sizes.shape[0])
        state = StateDict({"x": torch.zeros(b, width, k, dtype=dtype, device=device),
                           "adj": torch.zeros(b, width, width, dtype=dtype, device=device)})
        return Graph2DBatch(state, gdss_space(mask), {"node_mask": mask}, b)

    def split(self, x: Any, tpl: Graph2DBatch) -> list[dict[str, torch.Tensor]]:
        from .graph2d import decode_gdss

        return decode_gdss(x["x"], x["adj"], tpl.cond["node_mask"])

    def to_molecules(self, graphs: list[dict[str, torch.Tensor]], stats: Mapping[str, Any]) -> list[Any]:
        from .graph2d import gdss_charges

        vocab = self.vocabulary(stats)
        for g in graphs:
            g["charges"] = gdss_charges(g["atom_types"], g["bonds"], vocab)
        return super().to_molecules(graphs, stats)


__all__ = ["DigressConfig", "DigressModelConfig", "DigressRecipe", "GDSSConfig", "GDSSModelConfig", "GDSSRecipe", "Graph2DRecipe",
           "PRESETS_2D", "evaluate_2d"]
