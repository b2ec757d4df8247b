"""Text generation: unconditional, prompt prefix, infilling and semi-autoregressive blocks.

Known tokens (a prompt, or the fixed text of an infill template) are placed in the initial state and
kept by a state correction after every sampler step, so no sampler ever changes them. The core's
``Replacement`` guidance is used when it provides a discrete replacement; :class:`KeepKnown` is the
same correction written against the public ``StateCorrection`` protocol.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

import polydiff
import polydiff.errors
from polydiff.samplers import Chunk, sample_in_chunks
from polydiff.seeding import sample_generators
from polydiff.progress import sampling_callback

_MASK_SPAN = re.compile(r"\[MASK:(\d+)\]")


@dataclass(frozen=True)
class Template:
    """Known tokens and which positions are fixed.

    Attributes:
        ids: token ids ``(L,)`` int64 (free positions hold the mask id).
        known: ``(L,)`` bool, True where the token is fixed.
    """

    ids: Tensor
    known: Tensor


@dataclass(frozen=True)
class Generation:
    """Generated token ids with the sampler's accounting.

    Attributes:
        ids: ``(N, L)`` int64. known: ``(L,)`` bool or None. nfe: network calls per batch (effective NFE
        for cached samplers), summed over semi-AR blocks. steps: nominal sampler steps, summed the same way.
        seconds: wall-clock time. batches: number of ``polydiff.sample`` calls per semi-AR block.
    """

    ids: Tensor
    known: Tensor | None
    nfe: int
    steps: int
    seconds: float
    batches: int


def parse_infill(template: str, tokenizer: Any, mask_id: int) -> Template:
    """Parse ``"To be, [MASK:20] the question"``: each ``[MASK:n]`` is ``n`` free tokens, the rest fixed."""
    if "[MASK" in _MASK_SPAN.sub("", template) or any(int(m.group(1)) < 1 for m in _MASK_SPAN.finditer(template)):
        raise polydiff.errors.UserInputError(f"--infill {template!r}: write spans as [MASK:n] with n a positive integer")
    if not _MASK_SPAN.search(template):
        raise polydiff.errors.UserInputError(f"--infill {template!r}: no [MASK:n] span to generate (use --prompt for a prefix)")
    ids: list[int] = []
    known: list[bool] = []
    pos = 0
    for m in _MASK_SPAN.finditer(template):
        lit = encode_option(tokenizer, template[pos : m.start()], "--infill").tolist()
        ids += lit
        known += [True] * len(lit)
        n = int(m.group(1))
        ids += [mask_id] * n
        known += [False] * n
        pos = m.end()
    lit = encode_option(tokenizer, template[pos:], "--infill").tolist()
    ids += lit
    known += [True] * len(lit)
    return Template(torch.tensor(ids, dtype=torch.int64), torch.tensor(known, dtype=torch.bool))


def encode_option(tokenizer: Any, text: str, option: str) -> Any:
    """``tokenizer.encode(text)``; text it cannot encode is a :class:`~polydiff.errors.UserInputError` naming ``option``."""
    try:
        return tokenizer.encode(text)
    except ValueError as e:  # CharTokenizer: characters outside the vocabulary
        raise polydiff.errors.UserInputError(f"{option}: {e} (this run's tokenizer was fitted on its training text)") from None


def prompt_template(prompt: str, tokenizer: Any, mask_id: int, length: int) -> Template:
    """The prompt as fixed prefix of a sequence of ``length`` tokens."""
    p = encode_option(tokenizer, prompt, "--prompt").tolist() if prompt else []
    if len(p) >= length:
        raise polydiff.errors.UserInputError(f"--prompt has {len(p)} tokens; the sequence length is {length}: give a shorter "
                                             "prompt or a larger --length")
    ids = torch.full((length,), mask_id, dtype=torch.int64)
    ids[: len(p)] = torch.tensor(p, dtype=torch.int64)
    known = torch.zeros(length, dtype=torch.bool)
    known[: len(p)] = True
    return Template(ids, known)


class KeepKnown:
    """State correction: positions in ``known`` (``(B, L)`` or ``(L,)`` bool) always hold ``ids``."""

    def __init__(self, ids: Tensor, known: Tensor) -> None:
        self.ids, self.known = ids, known

    def correct(self, x: Tensor, t: Tensor, ctx: Any) -> Tensor:
        return torch.where(self.known.to(x.device), self.ids.to(x.device), x)


def _replacement(ids: Tensor, known: Tensor) -> Any:
    """The core's ``Replacement`` correction (discrete: ``where(known, ids, x)``), else :class:`KeepKnown`."""
    try:
        from polydiff.guidance import Replacement
    except ImportError:  # pragma: no cover - older core
        return KeepKnown(ids, known)
    return Replacement(ids, known)


def generators(seed: int, num: int, start: int = 0, device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One generator per sample (the core's rule, ``mix_seed(seed, i)``), so a sample does not depend on its batch."""
    return sample_generators(seed, num, start=start, device=device)


def model_device(model: Any) -> torch.device:
    """The device of a model's parameters (CPU for parameter-free models)."""
    try:
        return next(iter(model.parameters())).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")


def _sample_window(model: Any, x_start: Tensor, known: Tensor, *, sampler: str, steps: int, gens: list[torch.Generator],
                   options: dict[str, Any], guidance_scale: float = 1.0) -> tuple[Tensor, int, int]:
    if getattr(model.process, "mask_id", None) is None:  # uniform kernel: free positions start from the prior
        prior = model.process.prior_sample(x_start, generator=gens)
        x_start = torch.where(known, x_start, prior)
    guidance: list[Any] = [_replacement(x_start, known)] if bool(known.any()) else []
    cond = None
    if guidance_scale != 1.0 and bool(known.any()):
        # unsupervised CFG (SMDM): the unconditional branch sees the known tokens masked; combined in log-probs
        from polydiff.guidance import ClassifierFree

        cond = {"drop_prompt": torch.zeros_like(known)}
        guidance.insert(0, ClassifierFree(guidance_scale, uncond={"drop_prompt": known}))
    res = polydiff.sample(model, x_start=x_start, sampler=sampler, steps=steps, generator=gens, guidance=guidance, cond=cond,
                          **options)
    return res.x, int(res.nfe), int(res.steps)


def generate(model: Any, *, num: int, length: int, context: int, sampler: str, steps: int, seed: int,
             template: Template | None = None, batch_size: int = 64, stride: int = 0,
             options: dict[str, Any] | None = None, guidance_scale: float = 1.0) -> Generation:
    """Generate ``num`` sequences of ``length`` tokens with a masked diffusion ``model``.

    Sequences longer than the model's ``context`` are made semi-autoregressively: the first window is
    sampled, then each next window keeps the last ``context - stride`` tokens fixed and samples
    ``stride`` new ones (``stride`` defaults to ``context // 2``).

    Args:
        model: a Denoiser (or guided) over a masked process. template: known ids/positions of length ``length``.
        guidance_scale: classifier-free guidance ``w`` on the known tokens (1 = none; the unconditional
            branch sees them masked, as in SMDM). Each guided step runs the network on ``2 B`` sequences.
    """
    mask_id = model.process.num_states - 1  # the mask (masked kernel) or a placeholder (uniform kernel)
    if guidance_scale != 1.0 and getattr(model.process, "mask_id", None) is None:
        raise polydiff.errors.UserInputError(
            f"guidance_scale={guidance_scale}: classifier-free guidance needs the masked kernel (its unconditional "
            "branch sees the prompt masked, an input a uniform-kernel model is never trained on)")
    if template is not None and len(template.ids) != length:
        raise ValueError(f"template has {len(template.ids)} tokens, expected length={length}")
    base = template or Template(torch.full((length,), mask_id, dtype=torch.int64), torch.zeros(length, dtype=torch.bool))
    stride = stride or max(1, context // 2)
    if not 0 < stride <= context:
        raise polydiff.errors.UserInputError(f"stride={stride} must be in [1, context={context}] (windows may not leave gaps)")
    options = dict(options or {})
    dev = model_device(model)
    t0 = time.perf_counter()
    nsteps, calls = 0, 0
    windows = 1 + -(-max(0, length - context) // stride)  # polydiff.sample calls per chunk
    progress = sampling_callback(calls=-(-num // batch_size) * windows)  # the CLI's bar (None in plain API use)
    if progress is not None:
        options["callback"] = progress

    def draw(chunk: Chunk) -> tuple[Tensor, int]:
        """One chunk of sequences, window by window (semi-autoregressively past the context)."""
        nonlocal nsteps, calls
        seq = base.ids.to(dev).expand(chunk.size, length).clone()
        known = base.known.to(dev).expand(chunk.size, length).clone()
        start, end = 0, min(length, context)
        nfe_b = steps_b = calls_b = 0
        while True:
            win, kn = seq[:, start:end], known[:, start:end]
            x, n, s = _sample_window(model, win.clone(), kn.clone(), sampler=sampler, steps=steps, gens=chunk.generators,
                                     options=options, guidance_scale=guidance_scale)
            seq[:, start:end] = x
            known[:, start:end] = True
            nfe_b, steps_b, calls_b = nfe_b + n, steps_b + s, calls_b + 1
            if end >= length:
                break
            end = min(length, end + stride)
            start = max(0, end - context)
        nsteps, calls = max(nsteps, steps_b), calls_b
        return seq.cpu(), nfe_b

    drawn = sample_in_chunks(draw, num=num, batch_size=batch_size, seed=seed, device=dev)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return Generation(drawn.x, base.known if template is not None else None, drawn.nfe, nsteps,
                      time.perf_counter() - t0, calls)


@torch.no_grad()
def ar_generate(net: Any, *, num: int, length: int, bos_id: int, seed: int, prefix: Tensor | None = None,
                temperature: float = 1.0, batch_size: int = 64, context: int | None = None) -> Generation:
    """Ancestral sampling from a causal ``net(x, t) -> logits (B, L, V)`` (float64 categorical draws)."""
    t0 = time.perf_counter()
    out = []
    context = context or length
    nfe = 0
    dev = model_device(net)
    for b0 in range(0, num, batch_size):
        nb = min(batch_size, num - b0)
        gens = generators(seed, nb, b0, dev)
        seq = torch.full((nb, 1), bos_id, dtype=torch.int64, device=dev)
        if prefix is not None and len(prefix):
            seq = torch.cat([seq, prefix.to(dev).expand(nb, -1)], dim=1)
        nfe = 0
        while seq.shape[1] < length + 1:
            inp = seq[:, -context:]
            logits = net(inp, torch.zeros(nb, device=dev))[:, -1].to(torch.float64) / max(temperature, 1e-8)
            probs = logits.softmax(-1)
            u = torch.stack([torch.rand((), generator=g, dtype=torch.float64, device=dev) for g in gens])
            nxt = polydiff.processes.sample_categorical(probs, u)
            seq = torch.cat([seq, nxt[:, None]], dim=1)
            nfe += 1
        out.append(seq[:, 1:].cpu())
    known = None
    if prefix is not None and len(prefix):
        known = torch.zeros(length, dtype=torch.bool)
        known[: len(prefix)] = True
    return Generation(torch.cat(out), known, nfe, nfe, time.perf_counter() - t0, 1)


__all__ = ["Generation", "KeepKnown", "Template", "ar_generate", "generate", "generators", "parse_infill", "prompt_template"]
