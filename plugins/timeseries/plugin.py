"""Plugin hooks of the time-series plugin (entry point polydiff: timeseries)."""
