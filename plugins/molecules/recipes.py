"""Recipes ``molecules/edm`` and ``molecules/eqgat``: 3D molecule diffusion with the core's product process.

Both diffuse zero-centre-of-mass Gaussian positions together with categorical atom types and formal
charges (``molecules/eqgat`` also categorical bonds over every atom pair), each component with its own
schedule, kernel and loss weight, and sample with the core's ``mixed-ancestral`` sampler. The atom
count of a sample is drawn from the training set's ``p(N)``.

* ``molecules/edm``: EDM's geometry (EGNN, VP positions); positions are predicted as ``x0`` with
  EQGAT-diff's truncated-SNR weighting by default (``model.pos_prediction=eps`` gives EDM's own
  parameterisation, whose x0 estimate divides by ``alpha ~ 1.5e-4`` at the start and blew up an
  under-trained model's coordinates); bonds are inferred from distances when decoding (EDM's lookup
  table, ``chemistry``).
* ``molecules/eqgat``: EQGAT-diff / MiDi style: ``x0`` prediction everywhere, marginal kernels,
  loss weights (3, 0.4, 1, 2) for (positions, atoms, charges, bonds); bonds come from the model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

import polydiff
from polydiff import processes
from polydiff.errors import DataError, UserInputError
from polydiff.recipes import DataBundle, Recipe, RunDir, SampleOption

from .config import PRESETS, EQGATConfig, MolConfig, ModelConfig
from .tasks import MoleculeBatch, collate_molecules, draw_atom_counts, sample_batch, split_molecules

STATS_FILE = "molecules.json"
BOND_CLASSES = 5  # none, single, double, triple, aromatic


def categorical_process(kind: str, schedule: str, counts: torch.Tensor) -> processes.DiscreteProcess:
    """A categorical kernel over ``len(counts)`` classes; ``marginal`` uses the counts plus one (a pseudo-count)."""
    k = int(counts.numel())
    if kind == "marginal":
        return processes.MarginalProcess((counts.to(torch.float64) + 1.0).tolist(), schedule=schedule)
    if kind == "uniform":
        return processes.UniformProcess(k, schedule=schedule)
    if kind == "masked":
        return processes.MaskedProcess(k, schedule=schedule)
    raise ValueError(f"unknown categorical kernel {kind!r}")


def build_process(m: ModelConfig, counts: Mapping[str, torch.Tensor], *, bonds: bool) -> processes.ProductProcess:
    """The product process ``{pos, atom_types, charges[, bonds]}`` with per-component schedules and loss weights.

    Args:
        m: the model section. counts: class counts in the training data per categorical field (``(K,)`` each).
        bonds: include the bond field.
    """
    comps: dict[str, processes.ForwardProcess] = {
        "pos": processes.get(m.pos_schedule),
        "atom_types": categorical_process(m.atom_kernel, m.atom_schedule, counts["atom_types"]),
        "charges": categorical_process(m.charge_kernel, m.charge_schedule, counts["charges"]),
    }
    weights = {"pos": m.pos_weight, "atom_types": m.atom_weight, "charges": m.charge_weight}
    if bonds:
        comps["bonds"] = categorical_process(m.bond_kernel, m.bond_schedule, counts["bonds"])
        weights["bonds"] = m.bond_weight
    return processes.ProductProcess(comps, weights)


def build_denoiser(m: ModelConfig, counts: Mapping[str, torch.Tensor], *, bonds: bool, cond_dim: int = 0) -> polydiff.Denoiser:
    """The backbone (``model.backbone``: EGNN or e3nn) wrapped with its product process; ``eps``/``x0`` for positions,
    ``x0_logits`` for the rest."""
    from .backbones import E3NN, EGNN

    process = build_process(m, counts, bonds=bonds)
    c = process.components
    net_cls = E3NN if m.backbone == "e3nn" else EGNN
    extra = {"vectors": m.vectors} if m.backbone == "e3nn" else {}
    net = net_cls(
        c["atom_types"].num_states, c["charges"].num_states, c["atom_types"].vocab_size, c["charges"].vocab_size, **extra,
        hidden=m.hidden, layers=m.layers, pos_prediction=m.pos_prediction,
        bond_states=c["bonds"].num_states if bonds else 0, bond_classes=c["bonds"].vocab_size if bonds else 0,
        cond_dim=cond_dim, time_dim=m.time_dim, max_fully_connected=m.max_fully_connected, cutoff=m.cutoff,
        coords_range=m.coords_range, norm=m.aggregation_norm,
    )
    prediction = {k: ("x0_logits" if k != "pos" else m.pos_prediction) for k in c}
    return polydiff.Denoiser(net, process, prediction=prediction)


def molecule_loss(model: polydiff.Denoiser, batch: MoleculeBatch, cfg: MolConfig, generator: Any = None, *, bonds: bool) -> torch.Tensor:
    """The weighted sum over components of per-molecule means: position error (in the prediction space for
    ``default``, on x0 for ``uniform``) and x0 cross-entropies of the categorical fields."""
    if cfg.model.cond_property and batch.props is not None and cfg.model.cond_drop > 0:
        batch = replace(batch, props=drop_condition(batch.props, cfg.model.cond_drop, generator))
    out = model.loss(batch.state(bonds=bonds), cond=batch.cond(), space=batch.space(bonds=bonds), generator=generator,
                     weighting=cfg.model.pos_weighting, discrete_objective="ce")
    return out.loss


def drop_condition(props: torch.Tensor, p: float, generator: Any = None) -> torch.Tensor:
    """Classifier-free training: each molecule's condition row is zeroed (the null condition) with probability ``p``."""
    g = generator if isinstance(generator, torch.Generator) else None
    keep = torch.rand(props.shape[0], generator=g, device=g.device if g is not None else props.device).to(props.device) >= p
    return props * keep[:, None].to(props.dtype)


class MoleculeRecipe(Recipe):
    """Shared parts of the 3D recipes (see the module docstring)."""

    config_class: ClassVar[type] = MolConfig
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = PRESETS
    bonds: ClassVar[bool] = False
    sample_options: ClassVar[tuple[SampleOption, ...]] = (
        SampleOption("property", float, None, "target value of the conditioning property (property-conditioned runs)"),
        SampleOption("guidance_scale", float, None, "classifier-free guidance scale w (1 = none; default sample.guidance_scale)"),
    )

    # -- data ------------------------------------------------------------------------------------
    def _load(self, cfg: MolConfig, split: str) -> tuple[list[Any], Any]:
        """Molecules of ``split`` and the vocabulary (kept in memory: setup, datasets and evaluate share one read)."""
        from . import data

        limit = cfg.data.max_molecules if split == "train" else cfg.data.val_molecules
        key = (cfg.data.path, cfg.data.hydrogens, cfg.data.strict, split, limit)
        cache = self.__dict__.setdefault("_loaded", {})
        if key not in cache:
            if cfg.data.path:
                mols, vocab = data.load_user_data(cfg.data.path, None, cfg.data.strict)
                if vocab.hydrogens and not cfg.data.hydrogens:  # heavy atoms only, as configured
                    heavy = data.Vocabulary(tuple(e for e in vocab.elements if e != "H"), vocab.charges)
                    mols, vocab = data.load_user_data(cfg.data.path, heavy, cfg.data.strict)
                mols = mols[:limit] if (limit and split == "train") else mols
            else:
                mols, vocab = data.load_qm9(hydrogens=cfg.data.hydrogens, split=split, max_molecules=limit)
            cache[key] = (mols, vocab)
        return cache[key]

    def setup(self, cfg: MolConfig, run: RunDir) -> None:
        """Vocabulary, class counts, ``p(N)`` and property statistics of the training split -> ``artifacts/molecules.json``."""
        mols, vocab = self._load(cfg, "train")
        if not mols:
            raise DataError(f"{cfg.data.path or 'qm9'}: no training molecules")
        sizes = torch.tensor([int(m.atom_types.shape[0]) for m in mols])
        hist = torch.bincount(sizes).tolist()
        atoms = torch.bincount(torch.cat([m.atom_types for m in mols]), minlength=len(vocab.elements)).tolist()
        charges = torch.bincount(torch.cat([m.charges for m in mols]), minlength=len(vocab.charges)).tolist()
        bonds = torch.zeros(BOND_CLASSES, dtype=torch.int64)
        for m in mols:
            n = int(m.atom_types.shape[0])
            iu = torch.triu_indices(n, n, offset=1)
            bonds += torch.bincount(m.bonds[iu[0], iu[1]].to(torch.int64), minlength=BOND_CLASSES)
        stats: dict[str, Any] = {
            "elements": list(vocab.elements), "charges": list(vocab.charges), "atom_count_histogram": hist,
            "counts": {"atom_types": atoms, "charges": charges, "bonds": bonds.tolist()},
            "train_smiles": sorted({m.smiles for m in mols if getattr(m, "smiles", None)}),
        }
        prop = getattr(cfg.model, "cond_property", "")
        if prop:
            vals = [m.properties.get(prop) for m in mols]
            if any(v is None for v in vals):
                raise UserInputError(f"model.cond_property={prop!r}: not a property of the training molecules "
                                     f"(they have {', '.join(sorted(mols[0].properties)) or 'none'})")
            v = torch.tensor(vals, dtype=torch.float64)
            stats["property"] = {"name": prop, "mean": float(v.mean()), "std": float(v.std().clamp(min=1e-12))}
        run.artifacts.mkdir(parents=True, exist_ok=True)
        (run.artifacts / STATS_FILE).write_text(json.dumps(stats))

    def stats(self, cfg: MolConfig, run: RunDir) -> dict[str, Any]:
        p = run.artifacts / STATS_FILE
        if not p.exists():
            self.setup(cfg, run.ensure())
        return json.loads(p.read_text())

    def vocabulary(self, stats: Mapping[str, Any]) -> Any:
        from .data import Vocabulary

        return Vocabulary(elements=tuple(stats["elements"]), charges=tuple(stats["charges"]))

    def _props(self, mols: list[Any], stats: Mapping[str, Any]) -> torch.Tensor | None:
        info = stats.get("property")
        if not info:
            return None
        v = torch.tensor([float(m.properties[info["name"]]) for m in mols], dtype=torch.float64)
        return torch.stack([(v - info["mean"]) / info["std"], torch.ones_like(v)], dim=1).to(torch.float32)

    def datasets(self, cfg: MolConfig, run: RunDir) -> DataBundle:
        stats = self.stats(cfg, run)
        train, _ = self._load(cfg, "train")
        val = None
        if not cfg.data.path and cfg.train.eval_every > 0:
            val, _ = self._load(cfg, "valid")
        recipe = self

        def collate(items: list[Any]) -> MoleculeBatch:
            return collate_molecules(items, props=recipe._props(items, stats))

        return DataBundle(train=_ListDataset(train), val=_ListDataset(val) if val else None, collate=collate)

    # -- model -----------------------------------------------------------------------------------
    def model_config(self, cfg: MolConfig) -> ModelConfig:
        return cfg.model

    def build_model(self, cfg: MolConfig, run: RunDir) -> nn.Module:
        stats = self.stats(cfg, run)
        counts = {k: torch.tensor(v, dtype=torch.float64) for k, v in stats["counts"].items()}
        cond_dim = 2 if stats.get("property") else 0
        return build_denoiser(self.model_config(cfg), counts, bonds=self.bonds, cond_dim=cond_dim)

    def loss(self, model: nn.Module, batch: Any, cfg: MolConfig, generator: Any = None) -> torch.Tensor:
        return molecule_loss(model, batch, cfg, generator, bonds=self.bonds)  # type: ignore[arg-type]

    # -- sampling --------------------------------------------------------------------------------
    def sample(self, model: nn.Module, cfg: MolConfig, run: RunDir, *, num: int, sampler: str, steps: int, seed: int,
               options: Mapping[str, Any]) -> Any:
        """``num`` molecules (sample ``i`` from generator ``mix_seed(seed, i)``, so independent of the batch), decoded."""
        stats = self.stats(cfg, run)
        info = stats.get("property")
        target = options.get("property")
        scale = options.get("guidance_scale")
        scale = float(cfg.sample.guidance_scale if scale is None else scale)
        if target is not None and not info:
            raise UserInputError("--property: this run is unconditional (train with --set model.cond_property=NAME)")
        if info and target is None:
            raise UserInputError(f"this run is conditioned on {info['name']!r}: pass --property VALUE")
        targets = None if not info else torch.full((num,), float(target), dtype=torch.float64)
        return self.sample_targets(model, cfg, run, num=num, sampler=sampler, steps=steps, seed=seed, targets=targets,
                                   guidance_scale=scale)

    def sample_targets(self, model: nn.Module, cfg: MolConfig, run: RunDir, *, num: int, sampler: str, steps: int, seed: int,
                       targets: torch.Tensor | None = None, guidance_scale: float = 1.0) -> list[Any]:
        """``num`` decoded molecules; sample ``i`` is conditioned on ``targets[i]`` (property units) when given."""
        from polydiff.samplers import sample_in_chunks

        stats = self.stats(cfg, run)
        hist = torch.tensor(stats["atom_count_histogram"], dtype=torch.float64)
        p = next(model.parameters())
        info = stats.get("property")
        model.eval()
        mols: list[dict[str, torch.Tensor]] = []

        def draw(chunk: Any) -> Any:
            sizes = draw_atom_counts(hist, chunk.generators)
            props = None
            if info and targets is not None:
                z = (targets[chunk.lo:chunk.hi].to(torch.float64) - info["mean"]) / info["std"]
                props = torch.stack([z, torch.ones_like(z)], dim=1).to(dtype=p.dtype, device=p.device)
            batch, nfe = sample_batch(model, sizes, bonds=self.bonds, sampler=sampler, steps=steps, generators=chunk.generators,
                                      props=props, guidance_scale=guidance_scale, dtype=p.dtype, device=p.device)
            mols.extend(split_molecules(batch))
            return torch.zeros(chunk.size), nfe

        with torch.no_grad():
            res = sample_in_chunks(draw, num=num, batch_size=cfg.sample.batch_size, seed=seed, device=p.device)
        return self.decode(mols, stats, nfe=res.nfe)

    def decode(self, mols: list[dict[str, torch.Tensor]], stats: Mapping[str, Any], *, nfe: int = 0) -> Any:
        """Per-molecule tensors -> ``Molecule`` objects (bonds from the model, or inferred from distances for EDM)."""
        from . import chemistry
        from .data import Molecule

        vocab = self.vocabulary(stats)
        out = []
        for m in mols:
            if self.bonds:
                bonds = m["bonds"]
            else:
                symbols = [vocab.elements[int(i)] for i in m["atom_types"]]
                bonds = torch.as_tensor(chemistry.edm_lookup_bonds(symbols, m["positions"].numpy()), dtype=torch.int64)
            out.append(Molecule(atom_types=m["atom_types"], charges=m["charges"], positions=m["positions"], bonds=bonds))
        return out

    def write_samples(self, samples: Any, out_dir: Path, cfg: MolConfig, run: RunDir) -> list[Path]:
        """SDF (3D coordinates and bonds), SMILES list, PNG grid and a 3D-view PNG (``chemistry``/``writers``)."""
        from . import writers

        stats = self.stats(cfg, run)
        return writers.write_molecules(samples, Path(out_dir), self.vocabulary(stats), bonds="model")

    def read_samples(self, samples_dir: Path) -> Any:
        """Molecules of the SDF files in ``samples_dir`` (any tool's; vocabulary built from the files —
        :meth:`evaluate` reads them in the run's vocabulary instead)."""
        from . import writers

        return writers.read_molecules(Path(samples_dir))

    # -- evaluation ------------------------------------------------------------------------------
    def evaluate(self, model: nn.Module, cfg: MolConfig, run: RunDir, samples_dir: Path | None) -> dict[str, float]:
        """The metrics of ``metrics.evaluate_molecules`` on ``samples_dir`` (read in the run's vocabulary) or on
        ``eval.num_samples`` fresh samples, against the QM9 test split (or the user's training data)."""
        from . import metrics, writers

        stats = self.stats(cfg, run)
        vocab = self.vocabulary(stats)
        if samples_dir is not None:
            generated = writers.read_molecules(Path(samples_dir), vocab)
        else:
            generated = self.sample(model, cfg, run, num=cfg.eval.num_samples, sampler=cfg.sample.sampler, steps=cfg.eval.steps,
                                    seed=cfg.eval.seed, options=self._eval_options(stats))
        if cfg.data.path:
            reference, _ = self._load(cfg, "train")
        else:
            from . import data

            reference, _ = data.load_qm9(hydrogens=cfg.data.hydrogens, split="test", max_molecules=cfg.eval.reference_molecules)
        bonds = "model" if self.bonds else "edm-lookup"
        out = metrics.evaluate_molecules(generated, reference, set(stats.get("train_smiles", [])), vocab, bonds=bonds)
        if cfg.eval.nll_molecules > 0 and reference:
            out.update(self.nll(model, reference[: cfg.eval.nll_molecules], stats, steps=cfg.eval.nll_steps, seed=cfg.eval.seed))
        if stats.get("property") and cfg.eval.property_predictor_steps > 0 and reference:
            out.update(self.property_protocol(model, cfg, run, reference[: cfg.eval.property_molecules]))
        return out

    def property_protocol(self, model: nn.Module, cfg: MolConfig, run: RunDir, held_out: list[Any]) -> dict[str, float]:
        """EDM's table protocol (``property_eval``): a predictor trained on the training molecules scores molecules
        generated for the held-out molecules' property values, against the shuffled and real baselines."""
        from .property_eval import property_mae, train_property_predictor

        stats = self.stats(cfg, run)
        prop = stats["property"]["name"]
        train_mols, vocab = self._load(cfg, "train")
        predictor = train_property_predictor(train_mols, prop, atom_classes=len(vocab.elements), charge_classes=len(vocab.charges),
                                             steps=cfg.eval.property_predictor_steps, seed=cfg.eval.seed)
        targets = torch.tensor([float(m.properties[prop]) for m in held_out], dtype=torch.float64)
        generated = self.sample_targets(model, cfg, run, num=len(held_out), sampler=cfg.sample.sampler, steps=cfg.eval.steps,
                                        seed=cfg.eval.seed, targets=targets, guidance_scale=cfg.sample.guidance_scale)
        return property_mae(predictor, generated, targets, held_out, prop, seed=cfg.eval.seed).as_dict(prop)

    def nll(self, model: nn.Module, mols: list[Any], stats: Mapping[str, Any], *, steps: int, seed: int = 0) -> dict[str, float]:
        """Mean NLL bound (nats per molecule, and per atom) of ``mols`` (``likelihood.molecule_nll``, ``T = steps``)."""
        from polydiff.seeding import sample_generators

        from .likelihood import molecule_nll

        p = next(model.parameters())
        batch = collate_molecules(mols, props=self._props(mols, stats), dtype=p.dtype).to(p.device)
        res = molecule_nll(model, batch.state(bonds=self.bonds), batch.space(bonds=self.bonds), batch.cond(), steps=steps,
                           generator=sample_generators(seed, len(mols), device=p.device))
        atoms = batch.sizes.to(torch.float64).to(res.nats.device)
        return {f"nll/T{steps}/nats_per_molecule": float(res.nats.mean()), f"nll/T{steps}/nats_per_atom": float((res.nats / atoms).mean())}

    def report(self, metrics: Mapping[str, float], samples_dir: Path, out_dir: Path) -> str:
        """The metrics table and the samples' 2D grid and 3D views (copied next to the report, for ``polydiff demo``)."""
        import shutil

        md = super().report(metrics, samples_dir, out_dir)
        for name, title in (("samples_grid.png", "Samples (2D)"), ("samples_3d.png", "Samples (3D)")):
            src = Path(samples_dir) / name
            if src.exists():
                dst = Path(out_dir) / f"{self.name.replace('/', '_')}_{name}"
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
                md += f"\n![{title}]({dst.name})\n"
        return md

    def _eval_options(self, stats: Mapping[str, Any]) -> dict[str, Any]:
        info = stats.get("property")
        return {"property": info["mean"]} if info else {}


class _ListDataset(torch.utils.data.Dataset):
    def __init__(self, items: list[Any]) -> None:
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Any:
        return self.items[i]


class EDMRecipe(MoleculeRecipe):
    """EDM-style 3D molecules: EGNN on zero-CoM positions (x0 prediction by default) + categorical atom types and charges."""

    name: ClassVar[str] = "molecules/edm"
    demo: ClassVar[bool] = True
    description: ClassVar[str] = "EDM-style 3D molecules: EGNN, zero-CoM Gaussian positions + categorical atoms and charges; bonds from distances"


class EQGATRecipe(MoleculeRecipe):
    """EQGAT-diff / MiDi-style: x0 prediction of positions, atoms, charges and bonds (marginal kernels)."""

    name: ClassVar[str] = "molecules/eqgat"
    description: ClassVar[str] = "EQGAT-diff/MiDi-style 3D molecules: x0-predicting EGNN, categorical atoms, charges and bonds (marginal kernels)"
    bonds: ClassVar[bool] = True

    config_class: ClassVar[type] = EQGATConfig


__all__ = ["EDMRecipe", "EQGATRecipe", "MoleculeRecipe", "build_denoiser", "build_process", "categorical_process",
           "drop_condition", "molecule_loss"]
