"""Chunked sampling: one generator per sample (mix_seed(seed, i)), so the result does not depend on the chunk size."""

from __future__ import annotations

import pytest
import torch

import polydiff
from polydiff.seeding import mix_seed, sample_generators
from polydiff.testing.oracles import GaussianOracleNet


def _model() -> polydiff.Denoiser:
    mean, std = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64), torch.tensor([1.0, 0.3, 2.0], dtype=torch.float64)
    process = polydiff.processes.get("vp-cosine")
    return polydiff.Denoiser(GaussianOracleNet(process, mean, std), process, prediction="x0")


@pytest.mark.parametrize("sampler", ["ddim", "euler-maruyama"])
def test_samples_do_not_depend_on_the_chunk_size(sampler):
    model = _model()

    def draw(chunk):
        return polydiff.sample(model, shape=(chunk.size, 3), sampler=sampler, steps=8, generator=chunk.generators,
                               dtype=torch.float64)

    whole = polydiff.samplers.sample_in_chunks(draw, num=10, batch_size=10, seed=7)
    chunked = polydiff.samplers.sample_in_chunks(draw, num=10, batch_size=3, seed=7)
    torch.testing.assert_close(whole.x, chunked.x, rtol=0, atol=1e-12)
    assert (whole.chunks, chunked.chunks) == (1, 4)
    assert whole.nfe == chunked.nfe == whole.total_nfe  # each sample saw the same evaluations
    assert chunked.total_nfe == 4 * chunked.nfe
    other = polydiff.samplers.sample_in_chunks(draw, num=10, batch_size=10, seed=8)
    assert not torch.allclose(other.x, whole.x)


def test_sample_generators_follow_the_mix_seed_rule():
    gens = sample_generators(3, 4, start=5)
    for i, g in enumerate(gens):
        want = torch.Generator().manual_seed(mix_seed(3, 5 + i))
        assert torch.equal(torch.rand(4, generator=g), torch.rand(4, generator=want))
    with pytest.raises(ValueError, match="num and start"):
        sample_generators(0, -1)


def test_bad_request_sizes_are_refused():
    with pytest.raises(ValueError, match="number of samples"):
        polydiff.samplers.sample_in_chunks(lambda c: None, num=0, batch_size=4, seed=0)
    with pytest.raises(ValueError, match="batch size"):
        polydiff.samplers.sample_in_chunks(lambda c: None, num=4, batch_size=0, seed=0)
