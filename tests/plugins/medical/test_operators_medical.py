"""Medical operators: exact adjoints (float64), agreement with skimage's Radon transform and numpy's FFT,
spectral norms against dense matrices, FBP against skimage's iradon, masks and noise statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from polydiff.guidance import check_adjoint
from polydiff_medical.operators import CTOperator, MRIOperator, add_noise, mri_mask, simulate_coil_maps

MASKS = ["random1d", "equispaced1d", "gaussian1d", "random2d", "poisson2d"]


def _phantom(n: int) -> np.ndarray:
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    img = resize(shepp_logan_phantom(), (n, n), anti_aliasing=True)
    img[n // 8: n // 4, n // 2: n // 2 + n // 6] += 0.5  # break the phantom's symmetry
    return img


def _operators() -> list:
    s = simulate_coil_maps(4, (16, 16))
    return [
        CTOperator(16, 8),
        CTOperator(16, 6, span=90.0),
        CTOperator(16, 8, fan_beam=True),
        MRIOperator(mri_mask("random1d", (16, 16), 4)),
        MRIOperator(mri_mask("random2d", (16, 16), 4), coil_maps=s),
    ]


@pytest.mark.parametrize("op", _operators(), ids=repr)
def test_adjoint_float64(op) -> None:
    x = torch.zeros(3, 1, 16, 16, dtype=torch.float64)
    res = check_adjoint(op, x, generator=torch.Generator().manual_seed(1))
    assert res.rel_error < 1e-12, res


@pytest.mark.parametrize("n,views,span", [(33, 8, 180.0), (64, 16, 180.0), (40, 12, 120.0)])
def test_parallel_beam_matches_skimage_radon(n: int, views: int, span: float) -> None:
    """Exact agreement when the padded width ceil(sqrt(2) n) is odd: both rotate about the same pixel
    (for an even padded width skimage rotates about pixel P // 2, deepinv about the centre (P - 1) / 2)."""
    from skimage.transform import radon

    assert math.ceil(math.sqrt(2) * n) % 2 == 1
    img = _phantom(n)
    op = CTOperator(n, views, span=span)
    sino = op.forward(torch.tensor(img)[None, None]).numpy()[0, 0]
    ref = radon(img, theta=op.angles.numpy(), circle=False)
    assert sino.shape == ref.shape
    assert np.abs(sino - ref).max() <= 1e-10 * np.abs(ref).max()


def test_fan_beam_is_a_different_geometry_with_exact_adjoint() -> None:
    from skimage.transform import radon

    n = 32
    img = torch.tensor(_phantom(n))[None, None]
    op = CTOperator(n, 8, fan_beam=True)
    y = op.forward(img)
    assert y.shape[-1] == 8 and torch.isfinite(y).all()
    ref = radon(img.numpy()[0, 0], theta=op.angles.numpy(), circle=False)
    assert y.shape[-2] != ref.shape[0] or not np.allclose(y.numpy()[0, 0], ref)


@pytest.mark.parametrize("kind", MASKS)
def test_single_coil_mri_matches_numpy_fft(kind: str) -> None:
    n = 24
    img = _phantom(n)
    mask = mri_mask(kind, (n, n), 4, seed=3)
    op = MRIOperator(mask)
    y = op.forward(torch.tensor(img)[None, None]).numpy()[0]
    ref = mask.numpy() * np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(img), norm="ortho"))
    assert np.abs(y[0] + 1j * y[1] - ref).max() <= 1e-12 * np.abs(ref).max()
    zf = op.pinv(op.forward(torch.tensor(img)[None, None])).numpy()[0, 0]
    ref_zf = np.abs(np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(ref), norm="ortho")))
    assert np.abs(zf - ref_zf).max() <= 1e-12 * np.abs(ref_zf).max()


def test_multicoil_mri_matches_numpy_fft() -> None:
    n = 16
    img = _phantom(n)
    s = simulate_coil_maps(3, (n, n))
    mask = mri_mask("equispaced1d", (n, n), 2)
    y = MRIOperator(mask, coil_maps=s).forward(torch.tensor(img)[None, None]).numpy()[0]
    for c in range(3):
        ref = mask.numpy() * np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(s[c].numpy() * img), norm="ortho"))
        assert np.abs(y[0, c] + 1j * y[1, c] - ref).max() <= 1e-12 * np.abs(ref).max()
    # sum_c |S_c|^2 = 1, so a full mask makes A^T A the identity on real images
    full = MRIOperator(torch.ones(n, n), coil_maps=s)
    x = torch.tensor(img)[None, None]
    assert torch.allclose(full.normal(x), x, atol=1e-12)


@pytest.mark.parametrize("op", _operators()[:2] + _operators()[3:], ids=repr)
def test_norm_matches_dense_matrix(op) -> None:
    eye = torch.eye(256, dtype=torch.float64).reshape(256, 1, 16, 16)
    mat = op.forward(eye).reshape(256, -1).T
    ref = float(torch.linalg.matrix_norm(mat, ord=2))
    assert abs(op.norm(iters=300) - ref) <= 1e-4 * ref


def test_fbp_agrees_with_skimage_iradon() -> None:
    from skimage.transform import iradon

    n = 64
    img = _phantom(n)
    op = CTOperator(n, 180)
    y = op.forward(torch.tensor(img)[None, None])
    rec = op.pinv(y).numpy()[0, 0]
    ref = iradon(y.numpy()[0, 0], theta=op.angles.numpy(), circle=False, filter_name="ramp", output_size=n)
    inside = (np.hypot(*np.meshgrid(np.arange(n) - n / 2 + 0.5, np.arange(n) - n / 2 + 0.5)) < n / 2 - 4)
    err_ref = np.linalg.norm((ref - img)[inside]) / np.linalg.norm(img[inside])
    err = np.linalg.norm((rec - img)[inside]) / np.linalg.norm(img[inside])
    assert err < 0.2 and err < 1.5 * err_ref + 0.02, (err, err_ref)


@pytest.mark.parametrize("kind", MASKS)
def test_masks_meet_acceleration_and_keep_the_centre(kind: str) -> None:
    n = 32
    m = mri_mask(kind, (n, n), 4, center_fraction=0.125, seed=0)
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    assert abs(float(m.mean()) - 0.25) < 0.04
    assert bool(m[n // 2 - 2: n // 2 + 2, n // 2 - 2: n // 2 + 2].all())
    if kind.endswith("1d"):  # whole phase-encoding lines
        assert bool((m == m[:1]).all())


def test_poisson_disc_keeps_a_minimum_distance_away_from_the_centre() -> None:
    n = 32

    def outer_min_distance(kind: str) -> float:
        pts = torch.nonzero(mri_mask(kind, (n, n), 6, center_fraction=0.1)).double()
        outer = pts[torch.sqrt(((pts - n // 2) / (n / 2)).pow(2).sum(1)) > 0.6]
        assert len(outer) > 10
        return float((torch.cdist(outer, outer) + 1e9 * torch.eye(len(outer), dtype=torch.float64)).min())

    assert outer_min_distance("poisson2d") > 1.5  # no two samples touch, not even diagonally
    assert outer_min_distance("random2d") <= 1.5  # independent draws do touch at this density


def test_noise_models_have_their_moments() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.full((200_000,), 2.0, dtype=torch.float64)
    gauss = add_noise(y, "gaussian", 0.5, generator=g)
    assert abs(float(gauss.mean()) - 2) < 0.01 and abs(float(gauss.std()) - 0.5) < 0.01
    n0, mu = 1e4, 0.5
    lp = add_noise(y, "log-poisson", n0, generator=g, mu=mu)
    # delta method: var(-log(N/N0)/mu) = 1 / (mu^2 N0 exp(-mu y))
    sd = math.sqrt(1 / (mu**2 * n0 * math.exp(-mu * 2.0)))
    assert abs(float(lp.mean()) - 2) < 0.02 * sd * 10 and abs(float(lp.std()) / sd - 1) < 0.03
    pois = add_noise(y, "poisson", 10.0, generator=g)
    assert abs(float(pois.mean()) - 2) < 0.01 and abs(float(pois.var()) - 0.2) < 0.01
    ric = add_noise(torch.zeros_like(y), "rician", 0.3, generator=g)  # Rayleigh: mean sigma sqrt(pi/2)
    assert abs(float(ric.mean()) / (0.3 * math.sqrt(math.pi / 2)) - 1) < 0.01
    with pytest.raises(ValueError, match="unknown noise"):
        add_noise(y, "salt", 0.1)
