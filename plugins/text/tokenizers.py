"""Tokenizers: character level and byte-level BPE (trained locally with HF ``tokenizers``).

Both map text to ids in ``[0, vocab_size)``; the mask / begin-of-sequence id ``vocab_size`` is
outside the vocabulary (polydiff's masked process keeps the mask at ``vocab_size``). Saved to and
loaded from a run's ``artifacts`` folder.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

CHAR_FILE = "tokenizer_char.json"
BPE_FILE = "tokenizer_bpe.json"


class CharTokenizer:
    """One id per distinct character (sorted by code point).

    Args:
        chars: the vocabulary, a string of distinct characters.
    """

    kind = "char"

    def __init__(self, chars: str) -> None:
        if len(set(chars)) != len(chars) or not chars:
            raise ValueError("CharTokenizer needs a non-empty string of distinct characters")
        self.chars = chars
        self._index = {c: i for i, c in enumerate(chars)}
        cp = np.array([ord(c) for c in chars], dtype=np.int64)
        self._lut = np.full(int(cp.max()) + 1, -1, dtype=np.int64)
        self._lut[cp] = np.arange(len(chars))

    @classmethod
    def fit(cls, texts: Iterable[str]) -> CharTokenizer:
        """The tokenizer whose vocabulary is every character in ``texts``."""
        seen: set[str] = set()
        for t in texts:
            seen.update(t)
        if not seen:
            raise ValueError("cannot fit a tokenizer to an empty corpus")
        return cls("".join(sorted(seen)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """Ids of ``text``, shape ``(len(text),)`` int64; unknown characters raise ``ValueError`` naming them."""
        if not text:
            return np.zeros(0, dtype=np.int64)
        cp = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        ids = np.where(cp < len(self._lut), self._lut[np.minimum(cp, len(self._lut) - 1)], -1)
        if (ids < 0).any():
            bad = sorted({text[i] for i in np.nonzero(ids < 0)[0][:20]})
            raise ValueError(f"characters not in the tokenizer's vocabulary: {bad!r}")
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; ids outside the vocabulary (the mask) are shown as ``_``."""
        n = len(self.chars)
        return "".join(self.chars[i] if 0 <= i < n else "_" for i in map(int, ids))

    def save(self, folder: Path) -> Path:
        path = Path(folder) / CHAR_FILE
        path.write_text(json.dumps({"kind": "char", "chars": self.chars}), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: Path) -> CharTokenizer:
        return cls(json.loads(Path(path).read_text(encoding="utf-8"))["chars"])


class BPETokenizer:
    """Byte-level BPE (any UTF-8 text is encodable), trained locally.

    Args:
        tok: a ``tokenizers.Tokenizer``.
    """

    kind = "bpe"

    def __init__(self, tok) -> None:  # noqa: ANN001 - tokenizers.Tokenizer (lazy import)
        self.tok = tok

    @classmethod
    def fit(cls, texts: Iterable[str], vocab_size: int = 2048) -> BPETokenizer:
        """Train a byte-level BPE with ``vocab_size`` tokens on ``texts``."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=int(vocab_size), initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      show_progress=False)
        tok.train_from_iterator(list(texts), trainer)
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return int(self.tok.get_vocab_size())

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self.tok.encode(text).ids, dtype=np.int64)

    def encode_many(self, texts: list[str]) -> list[np.ndarray]:
        return [np.asarray(e.ids, dtype=np.int64) for e in self.tok.encode_batch(texts)]

    def decode(self, ids: Iterable[int]) -> str:
        n = self.vocab_size
        return self.tok.decode([int(i) for i in ids if 0 <= int(i) < n])

    def save(self, folder: Path) -> Path:
        path = Path(folder) / BPE_FILE
        self.tok.save(str(path))
        return path

    @classmethod
    def load(cls, path: Path) -> BPETokenizer:
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(path)))


Tokenizer = CharTokenizer | BPETokenizer


def fit_tokenizer(kind: str, texts: list[str], *, bpe_vocab: int = 2048) -> Tokenizer:
    """Fit the tokenizer ``kind`` (``char`` or ``bpe``) on ``texts``."""
    if kind == "char":
        return CharTokenizer.fit(texts)
    if kind == "bpe":
        return BPETokenizer.fit(texts, bpe_vocab)
    raise ValueError(f"data.tokenizer={kind!r}: expected 'char' or 'bpe'")


def load_tokenizer(folder: Path) -> Tokenizer:
    """Load the tokenizer saved in ``folder`` (a run's artifacts)."""
    folder = Path(folder)
    if (folder / CHAR_FILE).exists():
        return CharTokenizer.load(folder / CHAR_FILE)
    if (folder / BPE_FILE).exists():
        return BPETokenizer.load(folder / BPE_FILE)
    from polydiff.errors import CheckpointError

    raise CheckpointError(f"no tokenizer in {folder} (expected {CHAR_FILE} or {BPE_FILE}); was the run set up?")


__all__ = ["BPETokenizer", "CharTokenizer", "Tokenizer", "fit_tokenizer", "load_tokenizer"]
