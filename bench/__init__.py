"""Benchmarks and the simulators they use (see each script's docstring)."""
