"""The compressed complex STFT is exactly invertible and has SGMSE's shapes."""

from __future__ import annotations

import torch

from polydiff_audio.transforms import SpecConfig, compress, decompress, from_channels, spec_to_wav, stft, to_channels, wav_to_spec


def test_shapes_follow_sgmse_settings():
    cfg = SpecConfig()
    wav = torch.randn(2, 16000, generator=torch.Generator().manual_seed(0))
    x = wav_to_spec(wav, cfg)
    assert x.shape == (2, 2, 256, cfg.frames(16000)) and cfg.bins == 256
    assert cfg.frames(cfg.samples_for(64)) == 64


def test_round_trip_reconstructs_the_waveform():
    cfg = SpecConfig()
    g = torch.Generator().manual_seed(1)
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-4)):
        wav = 0.3 * torch.randn(3, 12345, generator=g, dtype=dtype)
        back = spec_to_wav(wav_to_spec(wav, cfg), cfg, wav.shape[-1])
        assert back.shape == wav.shape
        assert float((back - wav).abs().max()) < tol


def test_compression_is_the_stated_map_and_inverts():
    cfg = SpecConfig()
    z = torch.complex(torch.randn(4, 7, dtype=torch.float64), torch.randn(4, 7, dtype=torch.float64))
    c = compress(z, cfg)
    torch.testing.assert_close(c.abs(), cfg.beta * z.abs() ** cfg.alpha)
    torch.testing.assert_close(torch.angle(c), torch.angle(z))
    torch.testing.assert_close(decompress(c, cfg), z)
    x = to_channels(stft(torch.randn(1, 4000, dtype=torch.float64), cfg))
    torch.testing.assert_close(to_channels(from_channels(x)), x)


def test_chunked_stft_and_incremental_inverse_match_the_global_transform():
    from polydiff_audio.chunking import ChunkedSpectrogram, OverlapAdd, chunk_starts

    cfg = SpecConfig()
    wav = (0.3 * torch.randn(20000, generator=torch.Generator().manual_seed(2))).numpy()
    full = wav_to_spec(torch.from_numpy(wav)[None], cfg)[0]
    src = ChunkedSpectrogram(wav, cfg)
    starts = chunk_starts(src.frames, 40, 10)
    assert starts[0] == 0 and starts[-1] == src.frames - 40 and len(starts) > 3
    sink = OverlapAdd(len(wav), cfg, 10)
    for i, s in enumerate(starts):
        c = src.chunk(s, 40)
        torch.testing.assert_close(c, full[:, :, s:s + 40], atol=1e-5, rtol=1e-5)
        sink.add(s, c)
        if i % 2 == 1:
            sink.flush(starts[i + 1] if i + 1 < len(starts) else src.frames)
    assert abs(sink.result() - wav).max() < 1e-4
