"""Plugin hooks of the time-series plugin (entry point polydiff: timeseries)."""

from __future__ import annotations

from polydiff import hookimpl


@hookimpl
def register_recipes(register):  # type: ignore[no-untyped-def]
    """``timeseries/diffusion-ts`` and ``timeseries/csdi``."""
    from .recipes import CSDIRecipe, DiffusionTSRecipe

    register(DiffusionTSRecipe())
    register(CSDIRecipe())


@hookimpl
def register_metrics(register):  # type: ignore[no-untyped-def]
    """CRPS variants, point errors, coverage and the TimeGAN-protocol generation scores."""
    from . import generation_metrics as g
    from . import metrics as m

    for name, fn in (("crps", m.crps_quantile), ("crps-sum", m.crps_sum), ("crps-exact", m.crps_exact),
                     ("coverage", m.coverage), ("point-errors", m.point_errors),
                     ("discriminative", g.discriminative_score), ("predictive", g.predictive_score),
                     ("context-fid", g.context_fid), ("correlational", g.correlational_score)):
        register(f"timeseries/{name}", fn, description=(fn.__doc__ or "").strip().splitlines()[0])
