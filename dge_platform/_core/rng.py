"""SplitMix64, the counter-based generator behind GSEA's and signature search's permutations.

A stream derived from (seed, key) makes a permutation null independent of thread count and
of the other sets or queries computed beside it.
"""

import numba
import numpy as np


@numba.njit(inline="always", cache=True)
def splitmix64(state):
    """The next state and its 64-bit output."""
    state = state + np.uint64(0x9E3779B97F4A7C15)
    z = state
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return state, z
