"""Atomic, verified, pickle-free checkpoints.

Layout of ``run/checkpoints``::

    step-00000100/model.safetensors   model weights
    step-00000100/ema.safetensors     EMA weights (same keys as the model)
    step-00000100/state.safetensors   every tensor of the training state (optimizer moments, RNG states, ...)
    step-00000100/state.json          the rest of the training state; tensors appear as {"__tensor__": key}
    step-00000100/manifest.json       step, format, and size + sha256 of each file above
    latest                            {"step": 100, "dir": "step-00000100"}

A checkpoint is written into ``.tmp-step-N``, every file is fsynced, the directory is renamed to
``step-N`` with :func:`os.replace`, and only then is ``latest`` replaced (through a temp file), so a
process killed at any moment leaves ``latest`` pointing at a complete checkpoint. Loading checks the
manifest (sizes and sha256) and never unpickles anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError

FORMAT = 1
LATEST = "latest"
MANIFEST = "manifest.json"
_STEP_RE = re.compile(r"^step-(\d+)$")


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        path: the checkpoint directory. step: optimizer steps taken.
        model: model state dict. ema: EMA state dict (or ``None``). state: the training state (nested
            Python structure with tensors restored in place).
    """

    path: Path
    step: int
    model: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor] | None
    state: dict[str, Any]


# -- structure <-> (JSON, tensors) --------------------------------------------------------------------
def flatten(obj: Any) -> tuple[Any, dict[str, torch.Tensor]]:
    """Split a nested structure into a JSON-able value and a flat ``{key: tensor}`` mapping.

    Supports dicts (any JSON-scalar keys, e.g. the int keys of an optimizer state), lists, tuples,
    tensors, numpy arrays, and JSON scalars. Anything else raises ``TypeError`` (no pickling).
    """
    tensors: dict[str, torch.Tensor] = {}

    def enc(x: Any, path: str) -> Any:
        if isinstance(x, torch.Tensor):
            key = path or "_"
            tensors[key] = x.detach().to("cpu").contiguous()
            return {"__tensor__": key}
        if isinstance(x, np.ndarray):
            return {"__ndarray__": x.tolist(), "dtype": str(x.dtype)}
        if isinstance(x, np.generic):
            return x.item()
        if isinstance(x, dict):
            for k in x:
                if not isinstance(k, (str, int, float, bool)) and k is not None:
                    raise TypeError(f"cannot store a dict key of type {type(k).__name__} at {path!r}")
            return {"__dict__": [[k, enc(v, f"{path}/{k}")] for k, v in x.items()]}
        if isinstance(x, tuple):
            return {"__tuple__": [enc(v, f"{path}/{i}") for i, v in enumerate(x)]}
        if isinstance(x, list):
            return [enc(v, f"{path}/{i}") for i, v in enumerate(x)]
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        raise TypeError(f"cannot store an object of type {type(x).__name__} at {path!r} in a checkpoint")

    return enc(obj, ""), tensors


def unflatten(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`flatten`."""
    if isinstance(value, list):
        return [unflatten(v, tensors) for v in value]
    if isinstance(value, dict):
        if "__tensor__" in value:
            return tensors[value["__tensor__"]]
        if "__ndarray__" in value:
            return np.asarray(value["__ndarray__"], dtype=value["dtype"])
        if "__tuple__" in value:
            return tuple(unflatten(v, tensors) for v in value["__tuple__"])
        if "__dict__" in value:
            return {k: unflatten(v, tensors) for k, v in value["__dict__"]}
    return value


# -- writing ------------------------------------------------------------------------------------------
def file_mode() -> int:
    """``0o666`` less the process umask (``0o644`` under umask 022): the mode of the checkpoint files."""
    mask = os.umask(0o022)  # the umask can only be read by setting it
    os.umask(mask)
    return 0o666 & ~mask


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _for_safetensors(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous, and no two entries sharing memory (safetensors refuses shared tensors)."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for k, v in sd.items():
        t = v.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr()
        if t.numel() and ptr in seen:
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        out[k] = t
    return out


def step_dir_name(step: int) -> str:
    return f"step-{step:08d}"


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to ``path`` through a fsynced temp file and :func:`os.replace`."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def save_checkpoint(
    directory: Path,
    step: int,
    *,
    model: dict[str, torch.Tensor],
    ema: dict[str, torch.Tensor] | None,
    state: dict[str, Any],
    keep: int,
) -> Path:
    """Write checkpoint ``step`` atomically into ``directory``, point ``latest`` at it, keep the newest ``keep``.

    Returns:
        The checkpoint directory ``directory/step-N``.
    """
    if keep < 1:
        raise ValueError(f"train.keep_checkpoints must be >= 1, got {keep}")
    directory.mkdir(parents=True, exist_ok=True)
    name = step_dir_name(step)
    tmp = directory / f".tmp-{name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    state_json, state_tensors = flatten(state)
    save_file(_for_safetensors(model), str(tmp / "model.safetensors"))
    if ema is not None:
        save_file(_for_safetensors(ema), str(tmp / "ema.safetensors"))
    save_file(_for_safetensors(state_tensors), str(tmp / "state.safetensors"))
    with open(tmp / "state.json", "w") as f:
        json.dump(state_json, f)
    files = {}
    mode = file_mode()
    for p in sorted(tmp.iterdir()):
        os.chmod(p, mode)  # safetensors writes 0600; the run's files follow the umask
        _fsync_file(p)
        files[p.name] = {"bytes": p.stat().st_size, "sha256": _sha256(p)}
    with open(tmp / MANIFEST, "w") as f:
        json.dump({"format": FORMAT, "step": step, "torch": torch.__version__, "files": files}, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(tmp)
    final = directory / name
    if final.exists():  # an older run reached this step before being resumed from an earlier checkpoint
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(directory)
    write_json_atomic(directory / LATEST, {"step": step, "dir": name})
    prune(directory, keep)
    return final


def prune(directory: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints (never the one ``latest`` names) and stale temp dirs."""
    latest = _read_latest(directory) if (directory / LATEST).exists() else None
    steps = sorted((int(m.group(1)), p) for p in directory.iterdir() if (m := _STEP_RE.match(p.name)) and p.is_dir())
    for _, p in steps[:-keep]:
        if latest is None or p.name != latest[1]:
            shutil.rmtree(p, ignore_errors=True)
    for p in directory.glob(".tmp-step-*"):
        shutil.rmtree(p, ignore_errors=True)


# -- reading ------------------------------------------------------------------------------------------
def _read_latest(directory: Path) -> tuple[int, str]:
    path = directory / LATEST
    try:
        obj = json.loads(path.read_text())
        return int(obj["step"]), str(obj["dir"])
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint found: {path} does not exist") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"checkpoint pointer {path} is corrupt: {e}") from None


def latest_step(directory: Path) -> int:
    """The step of the checkpoint ``latest`` points at; 0 when there is none (a run not started)."""
    if not (directory / LATEST).exists():
        return 0
    return _read_latest(directory)[0]


def latest_checkpoint(directory: Path) -> Path | None:
    """The directory ``latest`` points at, or ``None`` when there is no ``latest`` file."""
    if not (directory / LATEST).exists():
        return None
    _, name = _read_latest(directory)
    return directory / name


REQUIRED_FILES = frozenset({"model.safetensors", "state.safetensors", "state.json"})
"""Files every checkpoint's manifest must list (``ema.safetensors`` is optional for weights-only use)."""


def verify(path: Path) -> dict[str, Any]:
    """Check every file of checkpoint ``path`` against its manifest; return the manifest.

    Raises:
        CheckpointError: a missing, truncated or altered file (the message names it).
    """
    mpath = path / MANIFEST
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        manifest = json.loads(mpath.read_text())
        files = manifest["files"]
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {mpath} is missing (incomplete checkpoint)") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"checkpoint {mpath} is corrupt: {e}") from None
    if manifest.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {mpath} has format {manifest.get('format')!r}; this polydiff reads format {FORMAT}")
    if not isinstance(files, dict) or not REQUIRED_FILES <= set(files):
        missing = sorted(REQUIRED_FILES - set(files)) if isinstance(files, dict) else sorted(REQUIRED_FILES)
        raise CheckpointError(f"checkpoint {mpath} is corrupt: the manifest does not list {missing}")
    for name, meta in files.items():
        f = path / name
        if not f.is_file():
            raise CheckpointError(f"checkpoint {f} is corrupt: the file is missing")
        try:
            expected_bytes, expected_sha = int(meta["bytes"]), str(meta["sha256"])
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"checkpoint {mpath} is corrupt: bad manifest entry for {name!r}") from None
        size = f.stat().st_size
        if size != expected_bytes:
            raise CheckpointError(f"checkpoint {f} is corrupt: {size} bytes, the manifest says {expected_bytes}")
        if _sha256(f) != expected_sha:
            raise CheckpointError(f"checkpoint {f} is corrupt: sha256 does not match the manifest")
    return manifest


def _load_tensors(f: Path, device: str | torch.device) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(f), device=str(device))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint {f} is corrupt: {e}") from None


def load_checkpoint(path: Path, *, device: str | torch.device = "cpu", weights_only: bool = False) -> Checkpoint:
    """Verify and load the checkpoint directory ``path`` (weights onto ``device``, state on CPU)."""
    manifest = verify(path)
    model = _load_tensors(path / "model.safetensors", device)
    ema = _load_tensors(path / "ema.safetensors", device) if "ema.safetensors" in manifest["files"] else None
    state: dict[str, Any] = {}
    if not weights_only:
        tensors = _load_tensors(path / "state.safetensors", "cpu")
        try:
            state = unflatten(json.loads((path / "state.json").read_text()), tensors)
        except (ValueError, KeyError) as e:
            raise CheckpointError(f"checkpoint {path / 'state.json'} is corrupt: {e}") from None
    return Checkpoint(path=path, step=int(manifest["step"]), model=model, ema=ema, state=state)


def load_latest(directory: Path, *, device: str | torch.device = "cpu", weights_only: bool = False) -> Checkpoint:
    """Load the checkpoint ``directory/latest`` names (``CheckpointError`` if there is none or it is corrupt)."""
    _, name = _read_latest(directory)
    return load_checkpoint(directory / name, device=device, weights_only=weights_only)


__all__ = [
    "Checkpoint",
    "flatten",
    "latest_checkpoint",
    "load_checkpoint",
    "load_latest",
    "prune",
    "save_checkpoint",
    "unflatten",
    "verify",
    "write_json_atomic",
]
