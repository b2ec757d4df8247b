"""A real MR slice in a fast test: dipy's bundled T1 coronal slice (inside the dipy wheel, no download).

On the real slice (resized to 20 x 20), with the exact denoiser of a Gaussian prior: fully sampled k-space has one
solution, so hard data consistency and the zero-filled baseline return the slice itself; at 4x Cartesian
undersampling the reconstruction keeps the measured k-space exactly (a posterior sample differs from the slice
in the unmeasured part), and a single slice through the z-TV path is the uncoupled solver (``D_z`` of one slice is
empty). Skipped when dipy is not installed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polydiff_medical.data import load_volume, resize_slices
from polydiff_medical.operators import MRIOperator, mri_mask
from polydiff_medical.oracles import gaussian_image_model
from polydiff_medical.tasks import SolverSettings
from polydiff_medical.volume3d import CouplingSettings, reconstruct_volume

pytest.importorskip("dipy")
N = 20


@pytest.fixture(scope="module")
def t1() -> np.ndarray:
    vol = load_volume("dipy-t1")
    assert vol.data.shape == (1, 256, 256) and vol.modality == "MR"
    assert 0 <= vol.data.min() and vol.data.max() <= 1 and vol.data.std() > 0.1  # a real image, not a constant
    return resize_slices(vol.data, N)


def test_data_consistency_on_the_real_t1_slice(t1: np.ndarray) -> None:
    u = torch.from_numpy(t1)[:, None]  # (1, 1, N, N), values in [0, 1]
    model = gaussian_image_model(torch.full((1, N, N), -0.8, dtype=torch.float64), 0.5)  # prior on x = 2u - 1
    s = SolverSettings(solver="dc", steps=3, cg_iters=20)
    full = MRIOperator(torch.ones(N, N, dtype=torch.float64))
    rec_full, _, _ = reconstruct_volume(model, full, full.forward(u), 0.0, s, CouplingSettings("none"))
    torch.testing.assert_close(rec_full, u, rtol=0, atol=1e-6)
    torch.testing.assert_close(full.pinv(full.forward(u)), u, rtol=0, atol=1e-6)
    op = MRIOperator(mri_mask("random1d", (N, N), 4, center_fraction=0.1, seed=0))
    y = op.forward(u)
    rec, nfe, _ = reconstruct_volume(model, op, y, 0.0, s, CouplingSettings("none"), generator=torch.Generator().manual_seed(0))
    assert nfe == 3
    torch.testing.assert_close(op.forward(rec), y, rtol=0, atol=1e-6)  # measured k-space kept
    assert float((rec - u).abs().max()) > 1e-2  # undersampled: not the image itself
    coupled, _, _ = reconstruct_volume(model, op, y, 0.0, s, CouplingSettings("tv-z", lam=1.0, rho=1.0),
                                      generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(coupled, rec, rtol=0, atol=1e-6)
