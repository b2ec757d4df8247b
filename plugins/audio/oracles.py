"""An analytic "speech" model in the STFT domain: the exact conditional denoiser for a process toward the mixture.

Clean spectrogram entries (both channels of every bin and frame) are independent ``x_0 ~ N(0, s_f^2)`` with a
per-frequency variance ``s_f^2``; the noise is independent ``n ~ N(0, r_f^2)``; the mixture is ``y = x_0 + n``.
Then ``x_0 | y ~ N(m, v)`` with ``m = s^2 / (s^2 + r^2) y`` and ``v = s^2 r^2 / (s^2 + r^2)`` (the Wiener posterior).

For a mean-reverting process ``x_t = y + a_t (x_0 - y) + sigma_t eps`` (OUVE, the SB-VE bridge) the standard
coordinate ``z_t = x_t - (1 - a_t) y = a_t x_0 + sigma_t eps`` gives the exact denoiser
``E[x_0 | x_t, y] = m + a v / (a^2 v + sigma^2) (z_t - a m)``. The probability-flow ODE then maps ``z_T`` to
``x_0 = m + sqrt(v / (a_T^2 v + sigma_T^2)) (z_T - a_T m)`` exactly (:meth:`GaussianSpeech.ideal_output_law`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class GaussianSpeech:
    """Variances ``s2`` (clean) and ``r2`` (noise), each ``(F,)``; states are ``(B, 2, F, T)``."""

    s2: Tensor
    r2: Tensor

    def _bcast(self, v: Tensor, like: Tensor) -> Tensor:
        return v.to(like.dtype).to(like.device)[None, None, :, None]

    def draw(self, batch: int, frames: int, generator: torch.Generator | None = None, dtype=torch.float64) -> tuple[Tensor, Tensor]:
        """``(x_0, y)`` each ``(batch, 2, F, frames)``."""
        F = self.s2.shape[0]
        e1 = torch.randn(batch, 2, F, frames, generator=generator, dtype=dtype)
        e2 = torch.randn(batch, 2, F, frames, generator=generator, dtype=dtype)
        x0 = self._bcast(self.s2.sqrt(), e1) * e1
        return x0, x0 + self._bcast(self.r2.sqrt(), e2) * e2

    def posterior(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """``(m, v)`` of ``x_0 | y``, both shaped like ``y``."""
        s2, r2 = self._bcast(self.s2, y), self._bcast(self.r2, y)
        return s2 / (s2 + r2) * y, (s2 * r2 / (s2 + r2)).expand_as(y)

    def ideal_output_law(self, process, y: Tensor, t_start: float, t_last: float, start_mean: Tensor | None = None,
                         start_var: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Mean and variance of the ideal sampler's output: the exact probability-flow ODE from ``t_start`` to the grid's
        last positive time ``t_last``, then the exact estimate ``E[x_0 | x_{t_last}, y]`` (what every sampler's final
        step returns). The start is ``x ~ N(start_mean, start_var)`` in data coordinates; by default the exact marginal.

        The map is affine: ``x = m + k (z_start - a_0 m)`` with ``k = c_l sqrt((a_l^2 v + s_l^2) / (a_0^2 v + s_0^2))``,
        ``c_l = a_l v / (a_l^2 v + s_l^2)``. From the exact marginal the output is ``N(m, a_l^2 v^2 / (a_l^2 v + s_l^2))``:
        the posterior, shrunk by the denoising at ``t_last``.
        """
        m, v = self.posterior(y)
        t = torch.tensor([t_start, t_last], dtype=torch.float64)
        sv = process.schedule(t)
        a0, s0, al, sl = (float(sv.alpha[0]), float(sv.sigma[0]), float(sv.alpha[1]), float(sv.sigma[1]))
        c_l = al * v / (al * al * v + sl * sl)
        k = c_l * ((al * al * v + sl * sl) / (a0 * a0 * v + s0 * s0)).sqrt()
        if start_mean is None:
            z_mean, z_var = a0 * m, a0 * a0 * v + s0 * s0
        else:
            z_mean, z_var = start_mean - (1.0 - a0) * y, start_var
        return m + k * (z_mean - a0 * m), k * k * z_var


class GaussianSpeechOracle(nn.Module):
    """``net(x_t, t, y) -> E[x_0 | x_t, y]`` for :class:`GaussianSpeech` under ``process`` (use ``prediction="x0"``)."""

    def __init__(self, model: GaussianSpeech, process) -> None:
        super().__init__()
        self.model = model
        self.process = process

    def forward(self, x_t: Tensor, t: Tensor, y: Tensor) -> Tensor:
        v_t = self.process.schedule(t)
        a = v_t.alpha.to(x_t.dtype)[:, None, None, None]
        sig = v_t.sigma.to(x_t.dtype)[:, None, None, None]
        m, v = self.model.posterior(y)
        z = x_t - (1.0 - a) * y
        return m + a * v / (a * a * v + sig * sig) * (z - a * m)


__all__ = ["GaussianSpeech", "GaussianSpeechOracle"]
