"""Data: corpus loading and split, user files, clear errors, packing, tokenizers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from polydiff.errors import DataError
from polydiff_text.data import (PackedBlocks, load_corpus, load_shakespeare, pack, play_split, read_user_corpus,
                                shakespeare_plays)
from polydiff_text.tokenizers import BPETokenizer, CharTokenizer, fit_tokenizer, load_tokenizer


def test_shakespeare_split_is_by_play_and_deterministic():
    plays = shakespeare_plays()
    assert len(plays) == 38
    splits = {s: [d.name for d in load_shakespeare(s)] for s in ("train", "val", "test")}
    assert [len(splits[s]) for s in ("train", "val", "test")] == [34, 2, 2]
    assert not set(splits["train"]) & (set(splits["val"]) | set(splits["test"]))
    assert not set(splits["val"]) & set(splits["test"])
    assert splits["test"] == [p.stem for i, p in enumerate(plays) if play_split(i) == "test"]
    text = load_shakespeare("val")[0].text
    assert "**" not in text and "#" not in text and len(text) > 10_000


def test_user_txt_jsonl_and_folder(tmp_path):
    (tmp_path / "a.txt").write_text("hello world\n" * 50, encoding="utf-8")
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps({"text": f"doc {i} " * 20}) for i in range(12)), encoding="utf-8")
    docs = read_user_corpus(tmp_path)
    assert len(docs) == 13
    train = load_corpus("shakespeare", str(tmp_path), "train")
    val = load_corpus("shakespeare", str(tmp_path), "val")
    assert len(train) + len(val) == 13 and len(val) == 1
    single = tmp_path / "a.txt"
    tr, va = load_corpus("", str(single), "train"), load_corpus("", str(single), "val")
    assert tr[0].text + va[0].text == single.read_text()


@pytest.mark.parametrize("content,suffix,match", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00", ".txt", "binary"),
    (b"caf\xe9 au lait", ".txt", "not valid UTF-8"),
    (b"", ".txt", "no text"),
    (b"   \n\n", ".txt", "no text"),
    (b'{"text": "ok"}\nnot json\n', ".jsonl", "line 2: invalid JSON"),
    (b'{"body": "no text field"}\n', ".jsonl", "line 1: expected an object"),
])
def test_bad_files_raise_data_error_naming_the_file(tmp_path, content, suffix, match):
    f = tmp_path / f"bad{suffix}"
    f.write_bytes(content)
    with pytest.raises(DataError, match=match) as e:
        read_user_corpus(f)
    assert str(f) in str(e.value)


def test_missing_and_empty_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_user_corpus(tmp_path / "nope")
    with pytest.raises(DataError, match="no .txt or .jsonl"):
        read_user_corpus(tmp_path)


def test_packing():
    ids = np.arange(103)
    b = PackedBlocks(ids, 10)
    assert len(b) == 10 and torch.equal(b[3], torch.arange(30, 40))
    assert len(PackedBlocks(ids, 10, stride=5)) == 19
    with pytest.raises(DataError, match="fewer than one block"):
        PackedBlocks(np.arange(5), 10)


def test_char_tokenizer_round_trip_and_save(tmp_path):
    text = "To be, or not to be: that is the question.\nÆ ünïcode"
    tok = CharTokenizer.fit([text])
    ids = tok.encode(text)
    assert ids.dtype == np.int64 and ids.max() < tok.vocab_size
    assert tok.decode(ids) == text
    tok.save(tmp_path)
    assert load_tokenizer(tmp_path).decode(ids) == text
    with pytest.raises(ValueError, match="not in the tokenizer"):
        tok.encode("Z")
    with pytest.raises(DataError):
        from polydiff_text.data import Document
        pack([Document("x.txt", "ZZZZ")], tok, 2)


def test_bpe_tokenizer_round_trip_and_save(tmp_path):
    docs = [d.text[:20000] for d in load_shakespeare("val")]
    tok = fit_tokenizer("bpe", docs, bpe_vocab=400)
    assert isinstance(tok, BPETokenizer) and tok.vocab_size <= 400
    s = "To be, or not to be — ünïcode!"
    ids = tok.encode(s)
    assert len(ids) < len(s.encode()) and tok.decode(ids) == s
    tok.save(tmp_path)
    assert load_tokenizer(tmp_path).decode(ids) == s
