"""pytest11 entry point: fixtures and conformance classes for plugin authors."""
