"""Benchmarks, each printing a ratio against a baseline measured in the same run (see each
script's docstring); the simulators they use are in ``dge_platform.sim``."""
