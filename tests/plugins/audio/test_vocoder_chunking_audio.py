"""Chunked DiffWave vocoding: per-chunk mel frames equal the global log-mel, the start noise is one global signal, the
cross-fade weights sum to one, chunked DDIM equals the whole-file run where the context covers the receptive field
(and differs without context), and the network never sees more than one chunk."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polydiff.config import resolve_config
from polydiff_audio.data import synthetic_speech
from polydiff_audio.transforms import log_mel
from polydiff_audio.vocoder import DiffWaveRecipe, mel_config
from polydiff_audio.vocoder_chunking import WaveOverlapAdd, block_noise, mel_frames, receptive_field


@pytest.fixture(scope="module")
def tiny():
    rec = DiffWaveRecipe()
    cfg = resolve_config(rec, preset="tiny", overrides=["sample.overlap_frames=2"])
    torch.manual_seed(0)
    model = rec.build_model(cfg, None).eval()
    torch.nn.init.normal_(model.net.final.weight, std=0.3)  # a non-zero output (the layer starts at zero)
    torch.nn.init.normal_(model.net.inp.weight, std=3.0)  # a strong dependence on x_t (edge effects show)
    for layer in model.net.layers:
        torch.nn.init.normal_(layer.dil.weight, std=1.0)
    return rec, cfg, model


@pytest.mark.parametrize("start,size", [(0, 5), (3, 7), (10, 9), (0, 20)])
def test_mel_frames_equal_the_global_log_mel(start, size):
    cfg = mel_config(resolve_config(DiffWaveRecipe(), preset="tiny"))
    wav = synthetic_speech(0.3, seed=4)  # 4800 samples, 19 frames
    full = log_mel(torch.from_numpy(wav)[None], cfg)[0]
    size = min(size, full.shape[-1] - start)
    torch.testing.assert_close(mel_frames(wav, cfg, start, size), full[:, start:start + size], atol=2e-5, rtol=0)


def test_block_noise_is_one_global_signal():
    whole = block_noise(7, 0, 3000, 256)
    torch.testing.assert_close(block_noise(7, 700, 1500, 256), whole[700:2200])
    assert not torch.equal(block_noise(8, 0, 256, 256), whole[:256])


def test_cross_fade_weights_sum_to_one():
    n, rng = 5000, np.random.default_rng(0)
    sig = rng.standard_normal(n).astype(np.float32)
    sink = WaveOverlapAdd(n, ramp=300)
    for a, b in [(0, 2000), (1500, 3800), (3300, n)]:  # overlapping kept parts, each the true signal
        sink.add(a, sig[a:b])
        sink.flush(b - 500 if b < n else n)
    np.testing.assert_allclose(sink.result(), sig, atol=1e-6)
    # chunks off by constants c1, c2: the seam is a convex combination, so the error stays within [c1, c2]
    sink = WaveOverlapAdd(n, ramp=300)
    sink.add(0, sig[:2000] + 1.0)
    sink.add(1500, sig[1500:] - 1.0)
    err = sink.result() - sig
    assert err.max() <= 1.0 + 1e-6 and err.min() >= -1.0 - 1e-6 and np.all(np.diff(err[1500:2000]) <= 1e-6)


def test_chunked_ddim_equals_the_whole_file_run_where_the_context_allows(tiny):
    rec, cfg, model = tiny
    steps, hop = 3, cfg.data.hop
    reach = receptive_field(model.net)
    assert reach == 2 * (1 + 2 + 4)  # tiny: 6 layers, dilations 1, 2, 4, 1, 2, 4, 3-tap kernels
    context = int(np.ceil(steps * reach / hop)) + 2  # the sampler's reach plus the mel upsampler's two frames
    wav = synthetic_speech(1.0, seed=1)  # 63 frames
    kw = dict(sampler="ddim", steps=steps, seed=3)
    whole, nfe, n1 = rec.vocode_chunks(model, cfg, wav, chunk_frames=1000, **kw)
    cfg_c = resolve_config(rec, preset="tiny", overrides=["sample.overlap_frames=2", f"sample.context_frames={context}"])
    chunked, nfe_c, n2 = rec.vocode_chunks(model, cfg_c, wav, chunk_frames=16, **kw)
    assert n1 == 1 and n2 >= 4 and nfe == nfe_c == steps and chunked.shape == wav.shape
    # the network's part of the output: the run minus the same run with the output layer at zero (eps_hat = 0); the
    # start noise's part x_1 / alpha_1 is the same in every run and would hide differences
    w = model.net.final.weight.data.clone()
    model.net.final.weight.data.zero_()
    try:
        base, _, _ = rec.vocode_chunks(model, cfg, wav, chunk_frames=1000, **kw)
    finally:
        model.net.final.weight.data.copy_(w)
    scale = float(np.abs(whole - base).max())
    assert scale > 1.0
    assert float(np.abs(chunked - whole).max()) < 1e-5 * scale  # float rounding only (measured ~1e-6)
    # without context the chunk edges see zero padding: the seams differ (the comparison above can fail)
    cfg_0 = resolve_config(rec, preset="tiny", overrides=["sample.overlap_frames=2", "sample.context_frames=0"])
    no_ctx, _, _ = rec.vocode_chunks(model, cfg_0, wav, chunk_frames=16, **kw)
    assert float(np.abs(no_ctx - whole).max()) > 1e-4 * scale  # measured ~1e-3


def test_the_network_never_sees_more_than_one_chunk(tiny):
    rec, cfg, model = tiny
    seen: list[int] = []
    h = model.net.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[-1]))
    try:
        cfg_c = resolve_config(rec, preset="tiny", overrides=["sample.chunk_frames=8", "sample.overlap_frames=2",
                                                              "sample.context_frames=1"])
        for seconds in (0.5, 1.5):
            seen.clear()
            out, nfe = rec.vocode(model, cfg_c, synthetic_speech(seconds, seed=2), sampler="ddpm", steps=2, seed=0)
            assert out.shape == (int(seconds * 16000),) and np.isfinite(out).all()
            assert max(seen) <= (8 + 2 * 1) * cfg.data.hop  # one chunk with its context, whatever the length
        fast, nfe = rec.vocode(model, cfg_c, synthetic_speech(0.5, seed=2), sampler="ddpm", steps=2, seed=0, schedule="fast")
        assert nfe == 6 and fast.shape == (8000,) and np.isfinite(fast).all()
    finally:
        h.remove()
