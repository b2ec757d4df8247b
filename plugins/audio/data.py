"""Speech data: users' folders (paired ``noisy/`` + ``clean/``, or ``clean/`` + ``noise/``), seeded on-the-fly mixing,
generated speech-like signals for tests and the default tiny data, and the Debian fillets-ng speech for the benchmark.

All clips are mono float32 numpy arrays at the model's sample rate (16 kHz by default).
"""

from __future__ import annotations

import glob
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from polydiff.errors import DataError, UserInputError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")


@dataclass(frozen=True)
class Clip:
    """One mono clip: ``audio`` ``(N,)`` float32 at ``sample_rate``; ``source`` names its file (or generator)."""

    audio: np.ndarray
    sample_rate: int
    source: str
    speaker: str = ""


@dataclass
class ReadReport:
    """What reading a folder did: counts of resampled, mixed-down and skipped files (first of each named)."""

    resampled: int = 0
    first_resampled: str = ""
    rates: set = field(default_factory=set)
    mixed_down: int = 0
    first_mixed: str = ""
    skipped: int = 0
    first_skipped: str = ""
    first_reason: str = ""

    def warn(self, where: str, sample_rate: int) -> None:
        """One warning per kind of notice."""
        if self.resampled:
            rates = ", ".join(f"{r} Hz" for r in sorted(self.rates))
            warnings.warn(f"{where}: {self.resampled} file(s) resampled from {rates} to {sample_rate} Hz "
                          f"(first: {self.first_resampled})", UserWarning, stacklevel=3)
        if self.mixed_down:
            warnings.warn(f"{where}: {self.mixed_down} multi-channel file(s) mixed down to mono (first: {self.first_mixed})",
                          UserWarning, stacklevel=3)
        if self.skipped:
            warnings.warn(f"{where}: {self.skipped} file(s) skipped as unreadable or empty (first: {self.first_skipped}: "
                          f"{self.first_reason}); set data.strict=true to refuse them", UserWarning, stacklevel=3)


def resample(audio: np.ndarray, orig: int, target: int) -> np.ndarray:
    """Band-limited resampling (torchaudio's windowed sinc) of a mono ``(N,)`` array."""
    if orig == target:
        return audio.astype(np.float32, copy=False)
    import torchaudio.functional as AF

    x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    return AF.resample(x, orig, target).numpy()


def read_audio(path: str | Path, sample_rate: int, report: ReadReport | None = None) -> np.ndarray:
    """Read a WAV/FLAC/OGG file as mono float32 at ``sample_rate`` (stereo mixed down, other rates resampled).

    Raises:
        DataError: the file cannot be decoded or holds no samples.
    """
    import soundfile as sf

    try:
        audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError for corrupt files
        raise DataError(f"{path}: cannot be read as audio ({type(exc).__name__}: {exc})") from None
    if audio.size == 0 or audio.shape[0] == 0:
        raise DataError(f"{path}: the file holds no samples")
    if audio.shape[1] > 1:
        audio = audio.mean(axis=1, dtype=np.float32)
        if report is not None:
            report.mixed_down += 1
            report.first_mixed = report.first_mixed or str(path)
    else:
        audio = audio[:, 0]
    if sr != sample_rate:
        if report is not None:
            report.resampled += 1
            report.rates.add(int(sr))
            report.first_resampled = report.first_resampled or str(path)
        audio = resample(audio, int(sr), sample_rate)
    return np.ascontiguousarray(audio, dtype=np.float32)


def audio_files(folder: str | Path) -> list[Path]:
    """WAV/FLAC/OGG files directly in ``folder`` and its subfolders, sorted."""
    root = Path(folder)
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)


def input_files(src: str | Path) -> list[tuple[str, Path]]:
    """``sample --input FILE_OR_DIR``: ``(name, path)`` per audio file (names relative to a folder, so the outputs mirror it).

    Raises:
        UserInputError: no such file or folder, or a folder without WAV/FLAC/OGG files.
    """
    root = Path(src)
    if root.is_file():
        return [(root.name, root)]
    if not root.is_dir():
        raise UserInputError(f"--input {root}: no such file or folder (expected a WAV/FLAC/OGG file or a folder of them)")
    files = audio_files(root)
    if not files:
        raise UserInputError(f"--input {root}: no {'/'.join(e[1:].upper() for e in AUDIO_EXTENSIONS)} files in this folder")
    return [(str(f.relative_to(root)), f) for f in files]


def read_folder(folder: str | Path, sample_rate: int, *, strict: bool = False, what: str = "audio") -> list[Clip]:
    """Every readable clip in ``folder``; unreadable or empty files are skipped with one warning (an error if ``strict``).

    Raises:
        DataError: the folder does not exist or holds no readable audio file; or, with ``strict``, any bad file.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder (expected a folder of WAV/FLAC/OGG {what} files)")
    files = audio_files(root)
    if not files:
        raise DataError(f"{root}: no WAV/FLAC/OGG files found (expected {what} files)")
    report = ReadReport()
    clips = []
    for f in files:
        try:
            clips.append(Clip(read_audio(f, sample_rate, report), sample_rate, str(f)))
        except DataError as exc:
            if strict:
                raise DataError(f"{exc} (data.strict=true refuses unreadable or empty files)") from None
            report.skipped += 1
            if not report.first_skipped:
                report.first_skipped, report.first_reason = str(f), str(exc).split(": ", 1)[-1]
    report.warn(str(root), sample_rate)
    if not clips:
        raise DataError(f"{root}: none of the {len(files)} {what} files could be read (first: {report.first_skipped})")
    return clips


@dataclass(frozen=True)
class UserData:
    """A user's folder: ``pairs`` (noisy, clean) with matching names, or ``clean`` clips and ``noise`` clips."""

    kind: str  # "paired" | "mix"
    clean: list[Clip]
    noisy: list[Clip] = field(default_factory=list)
    noise: list[Clip] = field(default_factory=list)


def load_user_folder(path: str | Path, sample_rate: int, *, strict: bool = False) -> UserData:
    """``PATH/noisy`` + ``PATH/clean`` (paired by file stem) or ``PATH/clean`` + ``PATH/noise`` (mixed on the fly).

    Raises:
        DataError: neither layout, or paired folders whose names do not match.
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"data.path {root}: no such folder (expected noisy/ + clean/ or clean/ + noise/ inside)")
    if (root / "noisy").is_dir() and (root / "clean").is_dir():
        noisy = {Path(c.source).stem: c for c in read_folder(root / "noisy", sample_rate, strict=strict, what="noisy")}
        clean = {Path(c.source).stem: c for c in read_folder(root / "clean", sample_rate, strict=strict, what="clean")}
        common = sorted(set(noisy) & set(clean))
        if not common:
            raise DataError(f"{root}: no file name appears in both noisy/ and clean/ (pairs are matched by name)")
        missing = sorted(set(noisy) ^ set(clean))
        if missing:
            warnings.warn(f"{root}: {len(missing)} file(s) have no partner in noisy/ or clean/ and are not used "
                          f"(first: {missing[0]})", UserWarning, stacklevel=2)
        pairs_n, pairs_c = [], []
        for k in common:
            n, c = noisy[k], clean[k]
            m = min(len(n.audio), len(c.audio))
            if len(n.audio) != len(c.audio):
                warnings.warn(f"{n.source}: {len(n.audio)} samples but its clean partner has {len(c.audio)}; both cut to {m}",
                              UserWarning, stacklevel=2)
            pairs_n.append(Clip(n.audio[:m], sample_rate, n.source))
            pairs_c.append(Clip(c.audio[:m], sample_rate, c.source))
        return UserData("paired", pairs_c, noisy=pairs_n)
    if (root / "clean").is_dir() and (root / "noise").is_dir():
        return UserData("mix", read_folder(root / "clean", sample_rate, strict=strict, what="clean speech"),
                        noise=read_folder(root / "noise", sample_rate, strict=strict, what="noise"))
    raise DataError(f"data.path {root}: expected subfolders noisy/ and clean/ (paired), or clean/ and noise/ (mixed at data.snrs)")


# -- mixing ------------------------------------------------------------------------------------------------------
def crop_or_pad(audio: np.ndarray, length: int, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """A random ``length``-sample crop, or the clip zero-padded at a random offset when shorter (``padded=True``)."""
    n = len(audio)
    if n >= length:
        start = int(rng.integers(0, n - length + 1))
        return audio[start:start + length], False
    out = np.zeros(length, dtype=np.float32)
    start = int(rng.integers(0, length - n + 1))
    out[start:start + n] = audio
    return out, True


def noise_segment(noise: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """A ``length``-sample stretch of ``noise`` from a random offset, looping the noise when it is shorter."""
    if len(noise) >= length:
        start = int(rng.integers(0, len(noise) - length + 1))
        return noise[start:start + length]
    reps = math.ceil(length / len(noise)) + 1
    tiled = np.tile(noise, reps)
    start = int(rng.integers(0, len(noise)))
    return tiled[start:start + length]


def mix_at_snr(clean: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``clean + g noise`` with ``g`` such that ``10 log10(|clean|^2 / |g noise|^2) = snr_db`` (same length)."""
    pc = float(np.sum(clean.astype(np.float64) ** 2))
    pn = float(np.sum(noise.astype(np.float64) ** 2))
    if pn <= 0.0:
        return clean.copy()
    g = math.sqrt(pc / (pn * 10.0 ** (snr_db / 10.0))) if pc > 0 else 0.0
    return (clean + g * noise).astype(np.float32)


def mixture(clean: Sequence[Clip], noise: Sequence[Clip], snrs: Sequence[float], length: int, seed: int) -> tuple[np.ndarray, np.ndarray, float, bool]:
    """The seeded mixture number ``seed``: ``(clean, noisy, snr_db, padded)``, each array ``(length,)``.

    The same seed gives the same clip, crop, noise stretch and SNR.
    """
    rng = np.random.default_rng(seed)
    c = clean[int(rng.integers(0, len(clean)))].audio
    x, padded = crop_or_pad(c, length, rng)
    n = noise_segment(noise[int(rng.integers(0, len(noise)))].audio, length, rng)
    snr = float(snrs[int(rng.integers(0, len(snrs)))])
    return x, mix_at_snr(x, n, snr), snr, padded


# -- generated speech-like signals -------------------------------------------------------------------------------
def synthetic_speech(seconds: float, sample_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """A speech-like signal: voiced syllables (harmonics of a gliding f0 shaped by three formants, ~4 Hz envelope),
    unvoiced noise bursts (fricatives) and pauses. Peak about 0.5; ``(N,)`` float32."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    out = np.zeros(n, dtype=np.float64)
    pos = int(rng.uniform(0.02, 0.15) * sample_rate)
    f0_base = rng.uniform(95, 230)
    freqs = np.fft.rfftfreq(2048, 1.0 / sample_rate)
    while pos < n:
        if rng.random() < 0.75:  # voiced syllable
            dur = int(rng.uniform(0.12, 0.35) * sample_rate)
            t = np.arange(dur) / sample_rate
            f0 = f0_base * (1 + 0.15 * rng.uniform(-1, 1) * t / max(t[-1], 1e-3)) * (1 + 0.01 * np.sin(2 * np.pi * 5 * t))
            phase = 2 * np.pi * np.cumsum(f0) / sample_rate
            formants = [(rng.uniform(300, 850), 80.0), (rng.uniform(900, 2300), 120.0), (rng.uniform(2400, 3300), 180.0)]
            seg = np.zeros(dur)
            for h in range(1, int(7000 / f0_base)):
                fh = h * f0_base
                amp = sum(math.exp(-0.5 * ((fh - fc) / bw) ** 2) for fc, bw in formants) + 0.02
                seg += amp / h**0.5 * np.sin(h * phase + rng.uniform(0, 2 * np.pi))
            env = np.sin(np.pi * np.arange(dur) / dur) ** 1.5
        else:  # unvoiced burst: high-passed noise
            dur = int(rng.uniform(0.05, 0.15) * sample_rate)
            spec = np.fft.rfft(rng.standard_normal(2048))
            spec *= 1.0 / (1.0 + np.exp(-(freqs - rng.uniform(2500, 4500)) / 300.0))
            seg = np.resize(np.fft.irfft(spec), dur) * 0.3
            env = np.hanning(dur)
        end = min(n, pos + dur)
        out[pos:end] += (seg * env)[: end - pos] * rng.uniform(0.5, 1.0)
        pos = end + int(rng.uniform(0.0, 0.25) * sample_rate * (rng.random() < 0.6))
    peak = np.abs(out).max()
    return (0.5 * out / peak if peak > 0 else out).astype(np.float32)


def synthetic_noise(kind: str, seconds: float, sample_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """Noise ``(N,)`` float32 of unit-ish level: ``white``, ``pink`` (1/f power), ``brown`` (1/f^2),
    ``babble`` (four overlapping synthetic talkers) or ``hum`` (mains harmonics plus a little white noise)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    if kind == "white":
        x = rng.standard_normal(n)
    elif kind in ("pink", "brown"):
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.fft.rfftfreq(n, 1.0 / sample_rate)
        f[0] = f[1]
        spec /= f ** (0.5 if kind == "pink" else 1.0)
        x = np.fft.irfft(spec, n)
    elif kind == "babble":
        x = sum(synthetic_speech(seconds, sample_rate, seed=int(rng.integers(1 << 30))).astype(np.float64) for _ in range(4))
    elif kind == "hum":
        t = np.arange(n) / sample_rate
        x = sum(np.sin(2 * np.pi * 50 * h * t + rng.uniform(0, 6.28)) / h for h in range(1, 12)) + 0.1 * rng.standard_normal(n)
    else:
        raise ValueError(f"unknown noise kind {kind!r}; expected white, pink, brown, babble or hum")
    x = np.asarray(x, dtype=np.float64)
    return (x / (x.std() + 1e-12) * 0.1).astype(np.float32)


TRAIN_NOISES = ("white", "brown", "babble")
TEST_NOISES = ("pink", "hum")


def synthetic_corpus(num: int, seconds: float, sample_rate: int = 16000, seed: int = 0, speakers: int = 4) -> list[Clip]:
    """``num`` generated utterances from ``speakers`` voices (one f0 range each, via the seed)."""
    return [Clip(synthetic_speech(seconds, sample_rate, seed=seed * 100_003 + i), sample_rate, f"synthetic:{seed}:{i}",
                 speaker=f"s{i % speakers}") for i in range(num)]


def synthetic_noises(kinds: Sequence[str], seconds: float = 6.0, sample_rate: int = 16000, seed: int = 0) -> list[Clip]:
    """One generated clip per noise kind."""
    return [Clip(synthetic_noise(k, seconds, sample_rate, seed=seed + i), sample_rate, f"synthetic-noise:{k}") for i, k in enumerate(kinds)]


# -- Debian fillets-ng speech (benchmark only) -------------------------------------------------------------------
FILLETS_ROOT = "/usr/share/games/fillets-ng"


def fillets_speech_files(root: str = FILLETS_ROOT) -> dict[str, list[str]]:
    """``{speaker id: [ogg files]}`` of the Czech dialogue (``fillets-ng-data-cs``); speaker = second name field."""
    files = sorted(glob.glob(os.path.join(root, "sound", "*", "cs", "*.ogg")))
    out: dict[str, list[str]] = {}
    for f in files:
        parts = os.path.basename(f)[:-4].split("-")
        out.setdefault(parts[1] if len(parts) > 1 else "?", []).append(f)
    return out


def fillets_noise_files(root: str = FILLETS_ROOT) -> list[str]:
    """Music tracks and sound effects of ``fillets-ng-data`` (non-stationary noise)."""
    return sorted(glob.glob(os.path.join(root, "music", "*.ogg")) + glob.glob(os.path.join(root, "sound", "share", "*.ogg")))


def read_clips(files: Sequence[str], sample_rate: int, speaker: str = "") -> list[Clip]:
    """Read files (mono, resampled) into clips; unreadable ones are skipped with one warning."""
    report = ReadReport()
    clips = []
    for f in files:
        try:
            clips.append(Clip(read_audio(f, sample_rate, report), sample_rate, f, speaker))
        except DataError:
            report.skipped += 1
            report.first_skipped = report.first_skipped or f
    if report.skipped:
        warnings.warn(f"{report.skipped} file(s) skipped (first: {report.first_skipped})", UserWarning, stacklevel=2)
    return clips


__all__ = [
    "AUDIO_EXTENSIONS", "Clip", "ReadReport", "TEST_NOISES", "TRAIN_NOISES", "UserData", "audio_files", "crop_or_pad",
    "fillets_noise_files", "fillets_speech_files", "load_user_folder", "mix_at_snr", "mixture", "noise_segment",
    "read_audio", "read_clips", "read_folder", "resample", "synthetic_corpus", "synthetic_noise", "synthetic_noises",
    "synthetic_speech",
]
