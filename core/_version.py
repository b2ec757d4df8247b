"""The package version, at the bottom layer so that any module may read it (``polydiff.__version__``)."""

__version__ = "0.1.0"
