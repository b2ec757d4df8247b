"""Regression tests for review findings in the text plugin (each failed before its fix)."""

from __future__ import annotations

import json

import pytest
import torch

import polydiff
import polydiff.errors
from polydiff.config import resolve_config, save_config
from polydiff.recipes import RunDir
from polydiff.training import train
from polydiff_text.recipes import MDLMRecipe, load_run_model
from polydiff_text.score_entropy import score_entropy_loss


class _Scores(torch.nn.Module):
    def forward(self, x_t, t, **cond):
        return torch.zeros(*x_t.shape, 4)


def test_score_entropy_is_finite_at_t_zero() -> None:
    p = polydiff.processes.get("masked", vocab_size=4)
    model = polydiff.Denoiser(_Scores(), p, prediction="x0_logits")
    x0 = torch.randint(0, 4, (3, 6), generator=torch.Generator().manual_seed(0))
    out = score_entropy_loss(model, x0, t=torch.tensor([0.0, 1e-8, 0.5]), generator=torch.Generator().manual_seed(1))
    assert bool(torch.isfinite(out.per_sample).all())


def test_semi_autoregressive_stride_may_not_leave_gaps() -> None:
    from polydiff_text.sampling import generate

    p = polydiff.processes.get("masked", vocab_size=4)
    model = polydiff.Denoiser(_Scores(), p, prediction="x0_logits")
    with pytest.raises(polydiff.errors.UserInputError, match="stride"):
        generate(model, num=1, length=40, context=16, sampler="ancestral", steps=4, seed=0, stride=24)


@pytest.fixture(scope="module")
def jsonl_run(tmp_path_factory):
    """A user .jsonl corpus whose documents have no newline: the separator must still be encodable."""
    root = tmp_path_factory.mktemp("jsonl")
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": f"line number {i} of a tiny corpus, repeated a few times. " * 3}) + "\n"
                              for i in range(24)))
    recipe = MDLMRecipe()
    cfg = resolve_config(recipe, preset="tiny", overrides=[
        "train.steps=2", "train.batch_size=4", "data.block_size=16", "train.checkpoint_every=2", "train.log_every=100",
        f"data.path={json.dumps(str(corpus))}"])  # data.path overrides data.source
    run = RunDir(root / "run")
    train(recipe, cfg, run, progress=False)
    save_config(cfg, run.config_path, header={"recipe": recipe.name})
    return run


def test_jsonl_documents_without_newlines_train(jsonl_run) -> None:
    assert (jsonl_run.checkpoints / "latest").exists()


def test_scorer_must_be_an_ar_run(jsonl_run) -> None:
    with pytest.raises(polydiff.errors.ConfigError, match="text/ar"):
        load_run_model(jsonl_run.path)
