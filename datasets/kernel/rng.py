"""Counter-based random numbers of the kernel: one SplitMix64 stream per electron.

The ``n``-th number of a history is a hash of ``(key, n)`` (:func:`uniform_pair`), and the key
hashes (seed, geometry, energy index, pixel, electron index) (:func:`electron_key`). No generator
state is shared between electrons, so a stack is the same for any number of threads, processes
or GPU blocks. The hash is SplitMix64's finaliser (Steele, Lea and Flood, OOPSLA 2014) applied
to a Weyl sequence; each 64-bit output gives two 32-bit uniforms. A flight owns
``HASHES_PER_FLIGHT`` consecutive counters of its electron's stream; hard collisions and Penn
events draw from streams of their own (``HARD_SALT``, ``PENN_SALT``), so the elastic-only physics
draws the same numbers with or without them.
"""

from __future__ import annotations

import numpy as np

from datasets.kernel.build import device_function

AZIMUTH_TRIES = 12
HASHES_PER_FLIGHT = 2 + AZIMUTH_TRIES  # 64-bit hashes, two 32-bit uniforms each
#: Hashes of a hard collision's energy transfer (stream ``HARD_SALT``).
MOLLER_TRIES = 8
#: Hashes of a Penn event per flight (stream ``PENN_SALT``): 4 for the loss, momentum and
#: secondary, ``AZIMUTH_TRIES`` for the q-normal azimuth, the rest for the plasmon-decay rejection
#: loop, two hashes a try.
PENN_HASHES = 32
PLASMON_TRIES = (PENN_HASHES - 4 - AZIMUTH_TRIES) // 2

GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # 2^64 / golden ratio: SplitMix64's Weyl increment
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_SHIFT30, _SHIFT27, _SHIFT31, _SHIFT32 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(32)
_ONE = np.uint64(1)
_LOW32 = np.uint64(0xFFFFFFFF)
_INV_2_32 = 1.0 / 4294967296.0  # 2^-32
HARD_SALT = np.uint64(0xD1B54A32D192ED03)
PENN_SALT = np.uint64(0x8CB92BA72F3D8DD7)
#: The probe's stream (entry point, energy spread) of a primary: ``mix64(key ^ PROBE_SALT)``, drawn
#: only when the probe has a width or an energy spread (the transport's draws never change).
PROBE_SALT = np.uint64(0x6A09E667F3BCC909)
#: The stream of a cascade's i-th secondary: ``mix64(key + i * SECONDARY_STRIDE)``.
SECONDARY_STRIDE = np.uint64(0xA24BAED4963EE407)


@device_function
def mix64(z):
    """SplitMix64 finaliser: a bijective 64-bit hash with full avalanche."""
    z = (z ^ (z >> _SHIFT30)) * _MIX1
    z = (z ^ (z >> _SHIFT27)) * _MIX2
    return z ^ (z >> _SHIFT31)


@device_function
def electron_key(seed, geometry, energy_index, pixel, electron):
    """The random-stream key of one primary: a hash of its five integer coordinates."""
    key = mix64(np.uint64(seed) + GOLDEN)
    key = mix64(key + np.uint64(geometry + 1) * GOLDEN)
    key = mix64(key + np.uint64(energy_index + 1) * GOLDEN)
    key = mix64(key + np.uint64(pixel + 1) * GOLDEN)
    return mix64(key + np.uint64(electron + 1) * GOLDEN)


@device_function
def uniform_pair(key, counter):
    """Two uniform numbers in (0, 1] (32 random bits each) from the ``counter``-th hash of ``key``."""
    bits = mix64(key + np.uint64(counter) * GOLDEN)
    return float((bits >> _SHIFT32) + _ONE) * _INV_2_32, float((bits & _LOW32) + _ONE) * _INV_2_32
