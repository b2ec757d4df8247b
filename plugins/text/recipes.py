"""Text recipes: ``text/mdlm`` (masked diffusion, time-conditioned), ``text/radd`` (time-independent) and ``text/ar``.

All three share data, tokenizer, packing and backbone size, so MDLM/RADD and the AR baseline are
matched in size and trained by the same engine. The AR model doubles as the scorer for generative
perplexity (``eval.ar_run``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import polydiff
import polydiff.errors
from polydiff.errors import ConfigError
from polydiff.recipes import DataBundle, Recipe, RunDir, SampleOption

from .backbone import TextTransformer
from .config import PRESETS, TextConfig
from .data import load_corpus, pack
from .metrics import ar_nll, diffusion_nelbo, generative_perplexity, unigram_entropy
from .ngram import NGramLM, fit_ngram
from .score_entropy import score_entropy_loss
from .sampling import ar_generate, encode_option, generate, parse_infill, prompt_template
from .tokenizers import fit_tokenizer, load_tokenizer
from .writers import TextSamples, read_jsonl, write_jsonl, write_txt

#: environment variable naming the AR scorer run for ``polydiff evaluate`` (overrides ``eval.ar_run``)
AR_RUN_ENV = "POLYDIFF_TEXT_AR_RUN"

SAMPLE_OPTIONS = (
    SampleOption("prompt", str, "", "text the samples start with (kept fixed)"),
    SampleOption("infill", str, "", 'template such as "To be, [MASK:20] the question": spans are generated, the rest is kept'),
    SampleOption("length", int, 0, "tokens per sample (0: one block); longer than a block is generated semi-autoregressively"),
    SampleOption("stride", int, 0, "new tokens per semi-autoregressive window (0: half a block)"),
    SampleOption("guidance_scale", float, 1.0, "classifier-free guidance on the prompt/infill text (1: none)"),
)


class ARLanguageModel(nn.Module):
    """A causal transformer language model; ``loss(x0)`` is the mean next-token NLL (nats).

    Args:
        net: a causal :class:`TextTransformer`; ``bos_id``: the begin-of-sequence id (``vocab_size``).
    """

    def __init__(self, net: TextTransformer) -> None:
        super().__init__()
        self.net = net
        self.bos_id = net.vocab_size

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x, t)

    def loss(self, x_0: torch.Tensor, generator: Any = None, **_: Any) -> polydiff.LossOutput:
        """Next-token NLL; ``per_sample`` is nats per sequence ``(B,)``."""
        inp = torch.cat([torch.full_like(x_0[:, :1], self.bos_id), x_0[:, :-1]], dim=1)
        logits = self.net(inp, None).float()
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), x_0, reduction="none").sum(-1)
        count = torch.full_like(nll, x_0.shape[1])
        return polydiff.LossOutput(loss=nll.sum() / count.sum(), per_sample=nll, count=count,
                                   t=torch.zeros(x_0.shape[0], device=x_0.device))


def load_run_model(path: str | Path, recipe: Recipe | None = None) -> tuple[Any, Any, TextConfig]:
    """``(model, tokenizer, cfg)`` of a trained text run (EMA weights; used to load the AR scorer)."""
    from polydiff.config import load_config
    from polydiff.training import load_model

    import tomllib

    cfg_path = RunDir(path).config_path
    try:
        saved = tomllib.loads(cfg_path.read_text()).get("recipe")
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise polydiff.errors.ConfigError(f"{cfg_path}: cannot read the run's config: {e}") from None
    if recipe is None and saved not in (None, ARRecipe.name):
        raise polydiff.errors.ConfigError(f"{path} is a {saved!r} run; the generative-perplexity scorer must be a text/ar run")
    recipe = recipe or ARRecipe()
    cfg = load_config(recipe, cfg_path)
    model = load_model(recipe, cfg, RunDir(path))
    return model, load_tokenizer(RunDir(path).artifacts), cfg


class _TextRecipe(Recipe):
    config_class = TextConfig
    presets = PRESETS
    sample_options = SAMPLE_OPTIONS
    time_conditioning = True

    # -- data ---------------------------------------------------------------------------------------
    def setup(self, cfg: TextConfig, run: RunDir) -> None:
        run.ensure()
        d = cfg.data
        train = load_corpus(d.source, d.path, "train", max_docs=d.max_docs)
        texts = [x.text for x in train]
        if d.tokenizer == "char":  # every character of every split, so held-out text is always encodable
            texts += [x.text for s in ("val", "test") for x in _maybe_corpus(d, s)]
            texts.append("\n\n")  # the separator pack() puts between documents
        fit_tokenizer(d.tokenizer, texts, bpe_vocab=d.bpe_vocab).save(run.artifacts)

    def tokenizer(self, run: RunDir) -> Any:
        return load_tokenizer(run.artifacts)

    def datasets(self, cfg: TextConfig, run: RunDir) -> DataBundle:
        d, tok = cfg.data, self.tokenizer(run)
        train = pack(load_corpus(d.source, d.path, "train", max_docs=d.max_docs), tok, d.block_size)
        val_docs = _maybe_corpus(d, "val")
        val = pack(val_docs, tok, d.block_size) if val_docs else None
        return DataBundle(train=train, val=val)

    def eval_blocks(self, cfg: TextConfig, run: RunDir) -> tuple[torch.Tensor, float]:
        """Evenly spaced held-out blocks ``(N, L)`` and the number of characters per token in them."""
        d, tok = cfg.data, self.tokenizer(run)
        blocks = pack(load_corpus(d.source, d.path, cfg.eval.split, max_docs=d.max_docs), tok, d.block_size)
        n = len(blocks) if cfg.eval.max_blocks <= 0 else min(len(blocks), cfg.eval.max_blocks)
        idx = torch.linspace(0, len(blocks) - 1, n).round().long().unique()
        x = torch.stack([blocks[int(i)] for i in idx])
        chars = sum(len(tok.decode(row.tolist())) for row in x)
        return x, chars / x.numel()

    # -- model --------------------------------------------------------------------------------------
    def build_model(self, cfg: TextConfig, run: RunDir) -> nn.Module:
        m = cfg.model
        V = self.tokenizer(run).vocab_size
        net = TextTransformer(V, m.d_model, m.n_layers, m.n_heads, time_conditioning=self.time_conditioning, dropout=m.dropout)
        process = polydiff.processes.get(m.kernel, vocab_size=V, schedule=m.schedule, eps=m.eps)
        return polydiff.Denoiser(net, process, "x0_logits")

    def loss(self, model: nn.Module, batch: Any, cfg: TextConfig, generator: torch.Generator | None = None) -> torch.Tensor:
        """The masked kernel's NELBO (MDLM) or the uniform kernel's ELBO, times drawn by ``model.time_sampling``."""
        objective = "nelbo" if cfg.model.kernel == "masked" else "elbo"
        return model.loss(batch, generator=generator, time_sampling=cfg.model.time_sampling,  # type: ignore[operator]
                          discrete_objective=objective).loss

    # -- sampling -----------------------------------------------------------------------------------
    def sample(self, model: nn.Module, cfg: TextConfig, run: RunDir, *, num: int, sampler: str, steps: int, seed: int,
               options: Mapping[str, Any]) -> TextSamples:
        tok = self.tokenizer(run)
        model.eval()
        prompt, infill = str(options.get("prompt") or ""), str(options.get("infill") or "")
        length = _length(options, cfg)
        mask_id = model.process.num_states - 1
        if prompt and infill:
            raise polydiff.errors.UserInputError("give either --prompt or --infill, not both")
        template = None
        if infill:
            template = parse_infill(infill, tok, mask_id)
            length = len(template.ids)
        elif prompt:
            template = prompt_template(prompt, tok, mask_id, length)
        gen = generate(model, num=num, length=length, context=cfg.data.block_size, sampler=sampler, steps=steps, seed=seed,
                       template=template, batch_size=cfg.sample.batch_size, stride=int(options.get("stride") or 0),
                       guidance_scale=float(options.get("guidance_scale") or 1.0))
        return _to_samples(tok, gen, infill or prompt, sampler, steps, seed)

    def write_samples(self, samples: TextSamples, out_dir: Path, cfg: Any, run: RunDir) -> list[Path]:
        out_dir = Path(out_dir)
        return [write_txt(samples, out_dir / "samples.txt"), write_jsonl(samples, out_dir / "samples.jsonl")]

    # -- evaluation ---------------------------------------------------------------------------------
    def likelihood(self, model: nn.Module, blocks: torch.Tensor, cfg: TextConfig):
        return diffusion_nelbo(model, blocks, mc=cfg.eval.mc, seed=cfg.eval.seed)

    def evaluate(self, model: nn.Module, cfg: TextConfig, run: RunDir, samples_dir: Path | None) -> dict[str, float]:
        model.eval()
        blocks, chars_per_token = self.eval_blocks(cfg, run)
        nll = self.likelihood(model, blocks, cfg)
        bound = self.name != "text/ar"
        out: dict[str, float] = {
            "nll_nats_per_token" if not bound else "nelbo_nats_per_token": nll.nats_per_token,
            "stderr_nats_per_token": nll.stderr,
            "bits_per_token": nll.bits_per_token,
            "bits_per_char": nll.bits_per_token / chars_per_token,
            "perplexity" if not bound else "perplexity_bound": nll.perplexity,
            "eval_sequences": float(nll.sequences),
        }
        if bound:
            out["eval_mc_samples"] = float(cfg.eval.mc)
        samples = _read_samples(samples_dir)
        if samples is None:
            s = self.sample(model, cfg, run, num=cfg.eval.gen_num, sampler=cfg.eval.gen_sampler, steps=cfg.eval.gen_steps,
                            seed=cfg.eval.seed, options={})
            n_tok = sum(len(i) for i in s.ids)
            out.update({"sample_seconds": s.seconds, "tokens_per_second": n_tok / max(s.seconds, 1e-9),
                        "nfe": float(s.nfe), "steps": float(s.steps)})
            texts = s.texts
        else:
            texts = samples
        tok = self.tokenizer(run)
        ids = [torch.as_tensor(tok.encode(t)) for t in texts]
        Lmin = min(len(i) for i in ids)
        out["sample_entropy"] = float(unigram_entropy(torch.stack([i[:Lmin] for i in ids])).mean())
        scorer = self._scorer(model, cfg, run)
        if scorer is None:
            fallback = f"reporting gen_ppl_ngram (a {cfg.eval.ngram_order}-gram of the training split) instead; " if cfg.eval.ngram_order > 0 else ""
            warnings.warn(f"{self.name}: no AR scorer, so gen_ppl is not reported; {fallback}train the AR baseline "
                          f"('polydiff train text/ar --out AR') and pass --set eval.ar_run=AR (or set {AR_RUN_ENV}=AR)",
                          UserWarning, stacklevel=2)
            if cfg.eval.ngram_order > 0:
                lm = self._ngram(cfg, run)
                nll = lm.token_nll(torch.stack([i[:Lmin] for i in ids]))
                ref = lm.token_nll(blocks[:, :Lmin])  # held-out real text of the samples' length, for scale
                out.update({"gen_ppl_ngram": float(np.exp(nll.mean())), "gen_ppl_ngram_real_text": float(np.exp(ref.mean())),
                            "ngram_order": float(lm.order)})
        else:
            net, stok, ctx = scorer
            sid = [torch.as_tensor(stok.encode(t)) for t in texts]
            Lm = min(len(i) for i in sid)
            g = generative_perplexity(net, torch.stack([i[:Lm] for i in sid]), net.bos_id, context=ctx)
            out.update({"gen_ppl": g.token_ppl, "gen_ppl_mean_sample": g.mean_sample_ppl, "gen_entropy": g.entropy})
        return out

    def report(self, metrics: Mapping[str, float], samples_dir: Path, out_dir: Path) -> str:
        """The metrics table and the first sample (for ``polydiff demo``)."""
        md = super().report(metrics, samples_dir, out_dir)
        f = Path(samples_dir) / "samples.jsonl"
        if f.exists():
            recs = read_jsonl(f)
            if recs:
                r = recs[0]
                md += f"\nFirst sample ({r['sampler']}, {r['steps']} steps, NFE {r['nfe']}):\n\n```text\n{r['text']}\n```\n"
        return md

    def _ngram(self, cfg: TextConfig, run: RunDir) -> NGramLM:
        """The fallback scorer: an ``eval.ngram_order``-gram of the training split in the run's tokens."""
        d, tok = cfg.data, self.tokenizer(run)
        stream = pack(load_corpus(d.source, d.path, "train", max_docs=d.max_docs), tok, 1).ids
        return fit_ngram(stream, tok.vocab_size, cfg.eval.ngram_order)

    def _scorer(self, model: nn.Module, cfg: TextConfig, run: RunDir) -> tuple[Any, Any, int] | None:
        ar_run = os.environ.get(AR_RUN_ENV) or cfg.eval.ar_run
        if not ar_run:
            return None
        net, tok, acfg = load_run_model(ar_run)
        return net.eval(), tok, acfg.data.block_size


def _length(options: Mapping[str, Any], cfg: TextConfig) -> int:
    """``--length`` (else ``sample.length``, else one block), at least 1."""
    given = options.get("length")
    length = int(given if given else (cfg.sample.length or cfg.data.block_size))
    if length < 1:
        src = "--length" if given else "sample.length"
        raise polydiff.errors.UserInputError(f"{src} {length}: expected a positive number of tokens (0: one block of "
                                             f"{cfg.data.block_size})")
    return length


def _maybe_corpus(d: Any, split: str) -> list:
    try:
        return load_corpus(d.source, d.path, split, max_docs=d.max_docs)
    except polydiff.errors.DataError:
        if split == "train":
            raise
        return []


def _to_samples(tok: Any, gen: Any, prompt: str, sampler: str, steps: int, seed: int) -> TextSamples:
    ids = [row.tolist() for row in gen.ids]
    n_tok = sum(len(r) for r in ids)
    extra = {"tokens_per_second": n_tok / max(gen.seconds, 1e-9), "windows": gen.batches}
    return TextSamples([tok.decode(r) for r in ids], ids, prompt, sampler, int(gen.steps), int(gen.nfe), int(seed),
                       float(gen.seconds), extra)


def _read_samples(samples_dir: Path | None) -> list[str] | None:
    if samples_dir is None:
        return None
    f = Path(samples_dir) / "samples.jsonl"
    if not f.is_file():
        found = sorted(p.name for p in Path(samples_dir).iterdir() if not p.name.startswith("."))[:6] if Path(samples_dir).is_dir() else []
        raise polydiff.errors.DataError(f"--samples {samples_dir}: expected samples.jsonl written by 'polydiff sample' of a text "
                                        f"run; found {', '.join(found) if found else 'no files'}")
    try:
        texts = [r["text"] for r in read_jsonl(f)]
    except (ValueError, KeyError, TypeError) as e:
        raise polydiff.errors.DataError(f"{f}: not a text samples file (each line a JSON object with a 'text' field): {e}") from None
    if not texts or not all(isinstance(t, str) for t in texts):
        raise polydiff.errors.DataError(f"{f}: no samples ('text' strings) in the file")
    return texts


class MDLMRecipe(_TextRecipe):
    """Masked diffusion LM (MDLM): absorbing process, SUBS, continuous-time NELBO, adaLN time conditioning."""

    name = "text/mdlm"
    demo = True
    description = "masked diffusion language model (MDLM): char/BPE text, Shakespeare by default"


class RADDRecipe(_TextRecipe):
    """RADD: the same objective with a time-independent network (enables the cached sampler's reuse)."""

    name = "text/radd"
    description = "reparameterized absorbing diffusion (RADD): time-independent network, cache-friendly sampling"
    time_conditioning = False


class SEDDRecipe(_TextRecipe):
    """SEDD (absorbing): score-entropy loss on unnormalised scaled log scores; sampled and evaluated like MDLM."""

    name = "text/sedd"
    description = "score-entropy discrete diffusion (SEDD, absorbing, scale-by-sigma): the score-entropy objective"

    def loss(self, model: nn.Module, batch: Any, cfg: TextConfig, generator: torch.Generator | None = None) -> torch.Tensor:
        if getattr(model.process, "mask_id", None) is None:
            raise ConfigError("text/sedd needs model.kernel='masked'")
        return score_entropy_loss(model, batch, generator=generator, time_sampling=cfg.model.time_sampling).loss


class ARRecipe(_TextRecipe):
    """Autoregressive baseline of matched size (causal attention); the generative-perplexity scorer."""

    name = "text/ar"
    description = "autoregressive transformer baseline (causal), matched to the diffusion presets"
    sample_options = (SAMPLE_OPTIONS[0], SAMPLE_OPTIONS[2])

    def build_model(self, cfg: TextConfig, run: RunDir) -> nn.Module:
        m = cfg.model
        V = self.tokenizer(run).vocab_size
        return ARLanguageModel(TextTransformer(V, m.d_model, m.n_layers, m.n_heads, time_conditioning=False, causal=True,
                                               dropout=m.dropout))

    def loss(self, model: nn.Module, batch: Any, cfg: TextConfig, generator: torch.Generator | None = None) -> torch.Tensor:
        return model.loss(batch).loss  # type: ignore[operator]

    def sample(self, model: nn.Module, cfg: TextConfig, run: RunDir, *, num: int, sampler: str, steps: int, seed: int,
               options: Mapping[str, Any]) -> TextSamples:
        tok = self.tokenizer(run)
        model.eval()
        if options.get("infill"):
            raise polydiff.errors.UserInputError("--infill: the AR baseline cannot infill; use text/mdlm or text/radd")
        prompt = str(options.get("prompt") or "")
        length = _length(options, cfg)
        prefix = torch.as_tensor(encode_option(tok, prompt, "--prompt")) if prompt else None
        if prefix is not None and len(prefix) >= length:
            raise polydiff.errors.UserInputError(f"--prompt has {len(prefix)} tokens; the sequence length is {length}: give a "
                                                 "shorter prompt or a larger --length")
        gen = ar_generate(model.net, num=num, length=length, bos_id=model.bos_id, seed=seed, prefix=prefix,
                          batch_size=cfg.sample.batch_size, context=cfg.data.block_size)
        return _to_samples(tok, gen, prompt, "autoregressive", gen.steps, seed)

    def likelihood(self, model: nn.Module, blocks: torch.Tensor, cfg: TextConfig):
        return ar_nll(model.net, blocks, model.bos_id)

    def _scorer(self, model: nn.Module, cfg: TextConfig, run: RunDir) -> tuple[Any, Any, int] | None:
        if os.environ.get(AR_RUN_ENV) or cfg.eval.ar_run:
            return super()._scorer(model, cfg, run)
        return model, self.tokenizer(run), cfg.data.block_size


RECIPES = (MDLMRecipe, RADDRecipe, SEDDRecipe, ARRecipe)

__all__ = ["AR_RUN_ENV", "ARLanguageModel", "ARRecipe", "MDLMRecipe", "RADDRecipe", "RECIPES", "SEDDRecipe", "load_run_model"]
