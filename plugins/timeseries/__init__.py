"""polydiff time-series plugin: generation, forecasting and imputation."""
