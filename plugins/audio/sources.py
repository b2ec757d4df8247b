"""Named clean-speech sources that install offline (``data.source = "alsa,espeak,flite"``).

=============  ==========================================================================  ======================
name           what                                                                        Debian package
=============  ==========================================================================  ======================
``alsa``       the 8 spoken words of ``/usr/share/sounds/alsa`` (one real speaker, 48 kHz)  ``alsa-utils``
``klettres``   recorded letters and syllables (``klettres:en`` for one language; speaker   ``klettres-data``
               = language, 44.1 kHz stereo mixed down)
``espeak``     English sentences synthesised by ``espeak-ng`` with several voice variants  ``espeak-ng``
               (speaker = voice, 22.05 kHz)
``flite``      the same sentences by ``flite``'s voices kal, awb, rms, slt (speaker = voice) ``flite``
``fillets``    the Czech dialogue of Fish Fillets NG (speaker = the file's second field)   ``fillets-ng-data-cs``
=============  ==========================================================================  ======================

Every clip is mono float32 at the requested rate (resampled with torchaudio's windowed sinc). A missing package
is a :class:`~polydiff.errors.DataError` naming the ``apt-get`` command; :func:`ensure_packages` runs that command
where it can (root with ``apt-get``), as the benchmark scripts and CI do. Generated speech is made in a temporary
folder and not cached (espeak-ng writes a sentence in ~0.1 s).
"""

from __future__ import annotations

import functools
import glob
import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from polydiff.errors import DataError, UserInputError

from .data import Clip, fillets_speech_files, read_clips

ALSA_DIR = "/usr/share/sounds/alsa"
KLETTRES_DIR = "/usr/share/klettres"

#: Sentences for the generated sources: the first ten Harvard sentences (IEEE 1969, list 1), phonetically balanced.
SENTENCES: tuple[str, ...] = (
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
)
ESPEAK_VOICES: tuple[str, ...] = ("en-us", "en-gb", "en-gb+f3", "en-us+m5", "en-gb-scotland", "en-us+f4")
FLITE_VOICES: tuple[str, ...] = ("kal", "awb", "rms", "slt")

PACKAGES = {"alsa": "alsa-utils", "klettres": "klettres-data", "espeak": "espeak-ng", "flite": "flite",
            "fillets": "fillets-ng-data-cs"}
SOURCE_NAMES = tuple(PACKAGES)


def _present(name: str) -> bool:
    if name == "alsa":
        return bool(_alsa_files())
    if name == "klettres":
        return Path(KLETTRES_DIR).is_dir()
    if name == "espeak":
        return shutil.which("espeak-ng") is not None
    if name == "flite":
        return shutil.which("flite") is not None
    return bool(fillets_speech_files())


def ensure_packages(names: Sequence[str]) -> list[str]:
    """Install the Debian packages of the named sources that are missing (``apt-get install --no-install-recommends``).

    Returns the sources still missing afterwards (empty when all are present). Installs only as root with ``apt-get``
    on the PATH; otherwise nothing is run and the missing sources are returned.
    """
    missing = [n for n in names if not _present(n)]
    if not missing or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return missing
    pkgs = sorted({PACKAGES[n] for n in missing})
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *pkgs], check=False, env=env, capture_output=True)
    return [n for n in names if not _present(n)]


def _require(name: str) -> None:
    if not _present(name):
        raise DataError(f"data.source {name!r}: the Debian package {PACKAGES[name]} is not installed "
                        f"(install it with: apt-get install --no-install-recommends {PACKAGES[name]})")


def _alsa_files() -> list[str]:
    return sorted(f for f in glob.glob(os.path.join(ALSA_DIR, "*.wav")) if os.path.basename(f) != "Noise.wav")


def alsa_words(sample_rate: int = 16000) -> list[Clip]:
    """The 8 spoken words of alsa-utils (``Noise.wav`` excluded), speaker ``alsa``."""
    _require("alsa")
    return read_clips(_alsa_files(), sample_rate, speaker="alsa")


def klettres(sample_rate: int = 16000, language: str | None = None) -> list[Clip]:
    """klettres-data recordings (all languages, or ``language`` such as ``en``); speaker = language."""
    _require("klettres")
    langs = [language] if language else sorted(p.name for p in Path(KLETTRES_DIR).iterdir() if p.is_dir())
    clips: list[Clip] = []
    for lang in langs:
        files = sorted(glob.glob(os.path.join(KLETTRES_DIR, lang, "*", "*.ogg")))
        if not files:
            raise DataError(f"data.source 'klettres:{lang}': no recordings in {KLETTRES_DIR}/{lang} "
                            f"(languages: {', '.join(sorted(p.name for p in Path(KLETTRES_DIR).iterdir() if p.is_dir()))})")
        clips += read_clips(files, sample_rate, speaker=f"klettres-{lang}")
    return clips


def _synthesise(cmd: Sequence[str], path: Path) -> None:
    r = subprocess.run(list(cmd), capture_output=True, text=True, check=False)
    if r.returncode != 0 or not path.is_file() or path.stat().st_size <= 44:
        raise DataError(f"{cmd[0]} failed ({' '.join(cmd[:3])} ...): {r.stderr.strip()[:200] or 'no output file'}")


def generated_speech(engine: str, sample_rate: int = 16000, sentences: Sequence[str] | None = None,
                     voices: Sequence[str] | None = None) -> list[Clip]:
    """Every sentence (default :data:`SENTENCES`) spoken by every voice of ``engine`` (``espeak`` or ``flite``);
    speaker = ``engine:voice``. Made once per process for the same arguments."""
    _require(engine)
    voices = tuple(voices or (ESPEAK_VOICES if engine == "espeak" else FLITE_VOICES))
    return list(_generated(engine, int(sample_rate), tuple(sentences or SENTENCES), voices))


@functools.lru_cache(maxsize=8)
def _generated(engine: str, sample_rate: int, sentences: tuple[str, ...], voices: tuple[str, ...]) -> tuple[Clip, ...]:
    clips: list[Clip] = []
    with tempfile.TemporaryDirectory(prefix="polydiff-tts-") as tmp:
        for v in voices:
            files = []
            for i, text in enumerate(sentences):
                p = Path(tmp) / f"{engine}-{v.replace('+', '_')}-{i:02d}.wav"
                if engine == "espeak":
                    _synthesise(["espeak-ng", "-v", v, "-s", "150", "-w", str(p), text], p)
                else:
                    _synthesise(["flite", "-voice", v, "-t", text, "-o", str(p)], p)
                files.append(str(p))
            for c in read_clips(files, sample_rate, speaker=f"{engine}:{v}"):
                clips.append(Clip(c.audio, c.sample_rate, f"{engine}:{v}:{Path(c.source).stem}", c.speaker))
    return tuple(clips)


def fillets(sample_rate: int = 16000) -> list[Clip]:
    """The Czech dialogue of Fish Fillets NG (1,782 clips; reading and resampling takes about a minute)."""
    _require("fillets")
    return [c for spk, files in sorted(fillets_speech_files().items()) for c in read_clips(files, sample_rate, speaker=spk)]


def load_sources(spec: str, sample_rate: int = 16000) -> list[Clip]:
    """Clips of a comma-separated list of sources, e.g. ``"alsa,espeak,klettres:en"`` (see the module table).

    Raises:
        UserInputError: an unknown source name.
        DataError: a source whose package is missing.
    """
    names = [s.strip() for s in str(spec).split(",") if s.strip()]
    if not names:
        raise UserInputError(f"data.source: expected a comma-separated list of {', '.join(SOURCE_NAMES)}, got {spec!r}")
    clips: list[Clip] = []
    for item in names:
        name, _, arg = item.partition(":")
        if name not in PACKAGES:
            raise UserInputError(f"data.source: unknown source {item!r}; expected one of {', '.join(SOURCE_NAMES)} "
                                 "(klettres:LANG for one language)")
        if arg and name != "klettres":
            raise UserInputError(f"data.source: {name!r} takes no argument, got {item!r}")
        if name == "alsa":
            clips += alsa_words(sample_rate)
        elif name == "klettres":
            clips += klettres(sample_rate, arg or None)
        elif name in ("espeak", "flite"):
            clips += generated_speech(name, sample_rate)
        else:
            clips += fillets(sample_rate)
    return clips


def split_by_speaker(clips: Sequence[Clip], fraction: float) -> tuple[list[Clip], list[Clip]]:
    """``(train, held out)``: the last ``ceil(fraction x speakers)`` speakers (sorted by name) are held out, so no held-out
    speaker is trained on; with a single speaker the last ``ceil(fraction x clips)`` clips are held out instead."""
    speakers = sorted({c.speaker for c in clips})
    if len(speakers) > 1:
        held = set(speakers[len(speakers) - max(1, math.ceil(fraction * len(speakers))):])
        if len(held) == len(speakers):
            held = {speakers[-1]}
        return [c for c in clips if c.speaker not in held], [c for c in clips if c.speaker in held]
    n_val = max(1, math.ceil(fraction * len(clips))) if len(clips) > 1 else 0
    return list(clips[: len(clips) - n_val]) or list(clips), list(clips[len(clips) - n_val:]) or list(clips)


__all__ = ["ESPEAK_VOICES", "FLITE_VOICES", "PACKAGES", "SENTENCES", "SOURCE_NAMES", "alsa_words", "ensure_packages",
           "fillets", "generated_speech", "klettres", "load_sources", "split_by_speaker"]
