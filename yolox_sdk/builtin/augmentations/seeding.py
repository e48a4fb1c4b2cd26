"""Running YOLOX functions that draw from global random state, reproducibly.

``yolox.data.data_augment`` draws from Python's ``random`` (affine parameters) and NumPy's legacy global
generator (HSV gains). Our augmentations must draw from ``context.rng`` so a seed reproduces a run
whatever the number of data-loader workers, so each call of such a function runs inside
``global_random_from(rng)``: the global generator it uses is seeded from ``rng`` for the call and
restored afterwards, leaving no trace on the caller's random state. Saving and restoring NumPy's legacy
state costs about 0.3 ms, so each generator is handled only when asked for. Not thread-safe (the globals
are shared), which is fine because data loading uses processes, not threads.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np


@contextmanager
def global_random_from(rng: np.random.Generator, python: bool = True, numpy: bool = False) -> Iterator[None]:
    """Seed ``random`` (and/or ``np.random``) from ``rng`` inside the block, restore it after the block."""
    seed = int(rng.integers(0, 2**32))
    python_state = random.getstate() if python else None
    numpy_state = np.random.get_state() if numpy else None
    if python:
        random.seed(seed)
    if numpy:
        np.random.seed(seed)
    try:
        yield
    finally:
        if python_state is not None:
            random.setstate(python_state)
        if numpy_state is not None:
            np.random.set_state(numpy_state)
