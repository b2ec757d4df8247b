"""Conformance test classes and fixtures for plugin authors (a pytest plugin)."""
