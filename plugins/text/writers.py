"""Sample writers: ``samples.txt`` (texts separated by a rule) and ``samples.jsonl`` (one record per sample)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

SEPARATOR = "\n\n" + "=" * 40 + "\n\n"


@dataclass(frozen=True)
class TextSamples:
    """Generated texts with how they were made.

    Attributes:
        texts: decoded samples. ids: token ids per sample. prompt: the prompt or infill template ("" if none).
        sampler, steps, nfe, seed: the sampler's name, nominal steps, network calls (effective NFE), seed.
        seconds: wall-clock time of the generation. extra: further fields written to every record.
    """

    texts: list[str]
    ids: list[list[int]]
    prompt: str
    sampler: str
    steps: int
    nfe: int
    seed: int
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


def write_txt(samples: TextSamples, path: Path) -> Path:
    """All samples in one UTF-8 file, separated by a rule line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SEPARATOR.join(samples.texts) + "\n", encoding="utf-8")
    return path


def write_jsonl(samples: TextSamples, path: Path) -> Path:
    """One JSON object per sample: text, prompt, sampler, steps, nfe, seed, index, ids, plus ``extra``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for i, (text, ids) in enumerate(zip(samples.texts, samples.ids)):
            rec = {"index": i, "text": text, "prompt": samples.prompt, "sampler": samples.sampler, "steps": samples.steps,
                   "nfe": samples.nfe, "seed": samples.seed, "seconds": samples.seconds, "ids": ids, **samples.extra}
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return path


def read_jsonl(path: Path) -> list[dict]:
    """Records written by :func:`write_jsonl`."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


__all__ = ["SEPARATOR", "TextSamples", "read_jsonl", "write_jsonl", "write_txt"]
