"""DNSMOS through speechmos's bundled ONNX models (offline): our single-thread wrapper agrees with the package's own
entry point, clean speech scores above the same speech in noise, the level normalisation, and a clear error when the
packages are missing. The scoring tests are slow (librosa's numba functions compile on the first call)."""

from __future__ import annotations

import numpy as np
import pytest

from polydiff.errors import UserInputError
from polydiff_audio import dnsmos as M
from polydiff_audio.data import mix_at_snr, synthetic_noise


def _speech() -> np.ndarray:
    from polydiff_audio.sources import alsa_words, ensure_packages

    if ensure_packages(["alsa"]):
        pytest.skip("alsa-utils is not installed and could not be installed here (apt-get install needs root and apt-get)")
    return np.concatenate([c.audio for c in alsa_words()[:2]])


def test_level_normalisation():
    x = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.01
    y = M.normalise_level(x)
    assert 20 * np.log10(np.sqrt(np.mean(y.astype(np.float64) ** 2))) == pytest.approx(-25.0, abs=1e-3)
    spiky = np.zeros(16000, dtype=np.float32)
    spiky[100] = 1.0
    assert np.abs(M.normalise_level(spiky)).max() == pytest.approx(0.99, abs=1e-6)  # would clip: scaled to the peak
    assert not M.normalise_level(np.zeros(10, dtype=np.float32)).any()


def test_missing_packages_are_a_user_error(monkeypatch):
    monkeypatch.setattr(M, "available", lambda: False)
    monkeypatch.setattr(M, "_SESSIONS", {})
    with pytest.raises(UserInputError, match="pip install speechmos"):
        M.dnsmos(np.zeros(16000, dtype=np.float32))


@pytest.mark.slow
def test_wrapper_agrees_with_speechmos_and_ranks_clean_above_noisy(tmp_path):
    if not M.available():
        pytest.skip("speechmos / onnxruntime / librosa are not installed (pip install speechmos onnxruntime librosa requests)")
    from speechmos import dnsmos as D

    x = _speech()
    ours = M.dnsmos(x)
    ref = D.run(M.normalise_level(x), 16000)  # the package's entry point (its own sessions)
    assert (ours.sig, ours.bak, ours.ovrl) == pytest.approx((ref["sig_mos"], ref["bak_mos"], ref["ovrl_mos"]), abs=1e-4)
    noisy = M.dnsmos(mix_at_snr(x, synthetic_noise("white", len(x) / 16000, seed=0), 0.0))
    assert ours.bak > noisy.bak + 1.0 and ours.ovrl > noisy.ovrl + 0.5  # white noise at 0 dB: a poor background
    assert all(1.0 <= v <= 5.0 for v in (ours.sig, ours.bak, ours.ovrl, noisy.sig, noisy.bak, noisy.ovrl))
    up = M.dnsmos(np.repeat(x[::2], 2), 8000)  # another rate is resampled to 16 kHz
    assert 1.0 <= up.ovrl <= 5.0
    # evaluate on a folder: the DNSMOS columns are the wrapper's values of the matched files
    import soundfile as sf

    from polydiff_audio.evaluation import evaluate_folder

    (tmp_path / "s").mkdir()
    (tmp_path / "ref").mkdir()
    sf.write(tmp_path / "s" / "a.wav", x, 16000, subtype="FLOAT")
    sf.write(tmp_path / "ref" / "a.wav", x, 16000, subtype="FLOAT")
    m = evaluate_folder(tmp_path / "s", tmp_path / "ref", dnsmos=True)
    assert m["dnsmos_ovrl"] == pytest.approx(ours.ovrl, abs=1e-4) and m["dnsmos_bak"] == pytest.approx(ours.bak, abs=1e-4)
