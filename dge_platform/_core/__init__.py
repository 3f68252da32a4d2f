"""Small pieces every layer shares: problems, file locks, study ids, the file memo, the RNG.

Layer 0: imports nothing else of the platform.
"""
