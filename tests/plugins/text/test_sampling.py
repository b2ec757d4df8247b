"""Sampling: RADD cached == uncached with fewer calls; prompt/infill positions never change under any sampler."""

from __future__ import annotations

import pytest
import torch

import polydiff
import polydiff.samplers
from polydiff_text.backbone import TextTransformer
from polydiff_text.sampling import Template, generate, generators, parse_infill, prompt_template
from polydiff_text.tokenizers import CharTokenizer

V, L = 6, 16


def model(time_conditioning: bool, seed: int = 0, kernel: str = "masked") -> polydiff.Denoiser:
    torch.manual_seed(seed)
    net = TextTransformer(V, d_model=32, n_layers=1, n_heads=2, time_conditioning=time_conditioning)
    # sharpen the random network a little so that samples are not uniform noise
    with torch.no_grad():
        net.head.weight.mul_(8.0)
    return polydiff.Denoiser(net, polydiff.processes.get(kernel, vocab_size=V), "x0_logits").eval()


def test_radd_cached_equals_uncached_with_fewer_calls():
    m = model(time_conditioning=False)
    steps = 64  # more steps than tokens: many steps reveal nothing, and the cache skips them
    a = polydiff.sample(m, shape=(4, L), sampler="ancestral", steps=steps, generator=generators(7, 4))
    c = polydiff.sample(m, shape=(4, L), sampler="cached", steps=steps, generator=generators(7, 4))
    assert torch.equal(a.x, c.x)
    assert a.nfe == steps
    assert c.nfe < a.nfe
    assert (c.x != m.process.mask_id).all()


def test_samples_do_not_depend_on_the_batch():
    m = model(time_conditioning=True)
    both = polydiff.sample(m, shape=(3, L), sampler="ancestral", steps=16, generator=generators(3, 3))
    alone = polydiff.sample(m, shape=(1, L), sampler="ancestral", steps=16, generator=generators(3, 3)[1:2])
    assert torch.equal(both.x[1:2], alone.x)


def _kernel_samplers():
    return [(k, s) for k in ("masked", "uniform") for s in polydiff.samplers.names(polydiff.processes.get(k, vocab_size=V))]


@pytest.mark.parametrize(("kernel", "sampler"), _kernel_samplers())
@pytest.mark.parametrize("kind", ["prompt", "infill"])
def test_known_positions_never_change(kernel, sampler, kind):
    m = model(time_conditioning=True, seed=1, kernel=kernel)
    mask_id = m.process.num_states - 1  # the mask (masked kernel) or the placeholder generate() starts from (uniform)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, V, (L,), generator=g)
    known = torch.zeros(L, dtype=torch.bool)
    if kind == "prompt":
        known[:5] = True
    else:
        known[:4] = True
        known[9:] = True
    tmpl = Template(torch.where(known, ids, torch.full_like(ids, mask_id)), known)
    out = generate(m, num=3, length=L, context=L, sampler=sampler, steps=12, seed=1, template=tmpl)
    assert torch.equal(out.ids[:, known], ids[known].expand(3, -1))
    assert (out.ids < V).all(), "every free position is generated"
    traj = polydiff.sample(m, x_start=tmpl.ids.expand(2, L).clone(), sampler=sampler, steps=12, generator=generators(2, 2),
                           guidance=[polydiff.guidance.Replacement(tmpl.ids, known)], return_trajectory=True)
    for x in traj.trajectory:  # every intermediate state keeps the known tokens
        assert torch.equal(x[:, known], ids[known].expand(2, -1))


def test_semi_autoregressive_longer_than_context():
    m = model(time_conditioning=True)
    tok = CharTokenizer("abcdef")
    tmpl = prompt_template("abc", tok, m.process.mask_id, 40)
    out = generate(m, num=2, length=40, context=L, sampler="ancestral", steps=8, seed=0, template=tmpl)
    assert out.ids.shape == (2, 40)
    assert (out.ids != m.process.mask_id).all()
    assert torch.equal(out.ids[:, :3], torch.tensor([0, 1, 2]).expand(2, 3))
    assert out.batches == 4  # windows [0,16), [8,24) ... up to 40 with stride 8


def test_parse_infill():
    tok = CharTokenizer.fit(["To be, the question"])
    t = parse_infill("To be, [MASK:5] the question", tok, mask_id=99)
    assert len(t.ids) == len("To be, ") + 5 + len(" the question")
    assert t.known.sum() == len(t.ids) - 5
    assert (t.ids[~t.known] == 99).all()
    assert tok.decode(t.ids[t.known].tolist()) == "To be,  the question"
    with pytest.raises(ValueError, match="MASK"):
        parse_infill("To be [MASK:x]", tok, mask_id=99)
    with pytest.raises(ValueError, match="prompt has"):
        prompt_template("To be", tok, 99, 3)


@pytest.mark.parametrize("kernel", ["masked", "uniform"])
def test_prompt_cfg(kernel):
    m = model(time_conditioning=True, seed=2, kernel=kernel)
    x = torch.randint(0, V, (2, L))
    known = torch.zeros(2, L, dtype=torch.bool)
    known[:, :4] = True
    # the unconditional branch equals the network on the input with the prompt masked
    masked = torch.where(known, torch.full_like(x, V), x)
    t = torch.tensor([0.3, 0.8])
    assert torch.equal(m.net(x, t, drop_prompt=known), m.net(masked, t))
    tmpl = Template(torch.where(known[0], x[0], torch.full_like(x[0], V)), known[0])
    if kernel == "uniform":  # the unconditional branch's masked prompt is an input a uniform model never saw
        with pytest.raises(polydiff.errors.UserInputError, match="masked kernel"):
            generate(m, num=2, length=L, context=L, sampler="ancestral", steps=8, seed=0, template=tmpl, guidance_scale=3.0)
        return
    plain = generate(m, num=2, length=L, context=L, sampler="ancestral", steps=8, seed=0, template=tmpl)
    same = generate(m, num=2, length=L, context=L, sampler="ancestral", steps=8, seed=0, template=tmpl, guidance_scale=1.0)
    guided = generate(m, num=2, length=L, context=L, sampler="ancestral", steps=8, seed=0, template=tmpl, guidance_scale=3.0)
    assert torch.equal(plain.ids, same.ids)
    assert torch.equal(guided.ids[:, :4], x[0, :4].expand(2, 4))
    assert (guided.ids != V).all()
    assert not torch.equal(guided.ids, plain.ids)  # w = 3 changes the conditionals (a fixed seed, so deterministic)
