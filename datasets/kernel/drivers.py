"""The two drivers of :func:`~datasets.kernel.history.follow_primary`: the CPU's ``prange`` over
tally bins and the CUDA kernel with one thread per primary."""

from __future__ import annotations

import sys
import types

import numba
import numpy as np
from numba import njit, prange

from datasets.kernel import build, elastic, flight, history, inelastic, instrument, layout, rng
from datasets.kernel.build import CPU_OPTIONS
from datasets.kernel.history import follow_primary
from datasets.kernel.layout import (
    STACK_DEPTH,
    STACK_FIELDS,
    TALLY_CREATED,
    TALLY_DETECTED,
    TALLY_DROPPED,
    TALLY_EVENTS,
    TALLY_FLIGHTS,
    TALLY_LOST,
)
from datasets.kernel.rng import electron_key


@njit(parallel=True, **CPU_OPTIONS)
def run_cpu(seed, first_bin, stop_bin, simulated_electrons_per_pixel, beam, volume, tables, counts, tallies):
    """Simulate tally bins ``first_bin..stop_bin-1`` of the ``(G, E, P)`` bin grid.

    ``beam`` is a :class:`~datasets.kernel.layout.Beam` (``x``, ``y`` (P,) nm, ``energy`` (E,) eV,
    the probe's ``sigma`` (E,) nm and ``spread`` (E,) eV).
    Bins are visited energy-fastest, so every thread's share mixes all energies (their costs
    differ 20x); each bin's primaries run in one thread, so the counts do not depend on the number
    of threads. ``counts[g, e, p]`` receives the detector's tally (detected electrons; weighted
    detectors: fixed-point ``WEIGHT_UNIT`` units); ``tallies[g, e, p]`` the ``TALLY_*`` statistics
    (flights, elastic events, lost electrons, secondaries created and dropped, detected electrons).
    """
    n_geometries, n_energies, n_pixels = counts.shape
    for i in prange(first_bin, stop_bin):
        e = i % n_energies
        g = (i // n_energies) % n_geometries
        p = i // (n_energies * n_geometries)
        stack = np.empty((STACK_DEPTH, STACK_FIELDS))
        signal = 0
        detected = 0
        flights = 0
        events = 0
        lost = 0
        created = 0
        dropped = 0
        for n in range(simulated_electrons_per_pixel):
            key = electron_key(seed, g, e, p, n)
            _, s, d, f, v, _, _, _, l_, c, x = follow_primary(key, beam.x[p], beam.y[p], beam.energy[e], beam.sigma[e],
                                                              beam.spread[e], g, volume, tables, stack)
            signal += s
            detected += d
            flights += f
            events += v
            lost += l_
            created += c
            dropped += x
        counts[g, e, p] = signal
        tallies[g, e, p, TALLY_DETECTED] = detected
        tallies[g, e, p, TALLY_FLIGHTS] = flights
        tallies[g, e, p, TALLY_EVENTS] = events
        tallies[g, e, p, TALLY_LOST] = lost
        tallies[g, e, p, TALLY_CREATED] = created
        tallies[g, e, p, TALLY_DROPPED] = dropped


def _cuda_transport(seed, first, n_threads, simulated_electrons_per_pixel, beam, volume, tables, counts, tallies):
    """One CUDA thread per primary ``j = first + thread``: bin ``j // N``, electron ``j % N``; the
    counts summed with integer atomics, so they do not depend on the launch configuration."""
    thread = cuda.grid(1)  # noqa: F821 - bound in the CUDA namespace
    if thread >= n_threads:
        return
    stack = cuda.local.array((STACK_DEPTH, STACK_FIELDS), numba.float64)  # noqa: F821
    j = first + thread
    b = j // simulated_electrons_per_pixel
    n = j - b * simulated_electrons_per_pixel
    n_energies, n_pixels = counts.shape[1], counts.shape[2]
    p = b % n_pixels
    e = (b // n_pixels) % n_energies
    g = b // (n_pixels * n_energies)
    key = electron_key(seed, g, e, p, n)
    _, s, d, f, v, _, _, _, lost, created, dropped = follow_primary(
        key, beam.x[p], beam.y[p], beam.energy[e], beam.sigma[e], beam.spread[e], g, volume, tables, stack)
    if s > 0:
        cuda.atomic.add(counts, (g, e, p), s)  # noqa: F821
    if d > 0:
        cuda.atomic.add(tallies, (thread % tallies.shape[0], TALLY_DETECTED), d)  # noqa: F821
    slot = thread % tallies.shape[0]  # spread the statistics' atomics over many addresses
    cuda.atomic.add(tallies, (slot, TALLY_FLIGHTS), f)  # noqa: F821
    cuda.atomic.add(tallies, (slot, TALLY_EVENTS), v)  # noqa: F821
    if lost > 0:
        cuda.atomic.add(tallies, (slot, TALLY_LOST), lost)  # noqa: F821
    if created > 0:
        cuda.atomic.add(tallies, (slot, TALLY_CREATED), created)  # noqa: F821
        cuda.atomic.add(tallies, (slot, TALLY_DROPPED), dropped)  # noqa: F821


#: The modules whose device functions and constants the CUDA build binds together.
_KERNEL_MODULES = (build, layout, rng, flight, elastic, inelastic, instrument, history)
_CUDA_KERNEL = None


def cuda_kernel():
    """The CUDA kernel, compiled once per process from the same device-function sources.

    Every function recorded by :func:`~datasets.kernel.build.device_function` is re-bound in
    one namespace (the globals of the kernel's modules) where its callees are the CUDA versions,
    then compiled with ``numba.cuda.jit(device=True)``; under ``NUMBA_ENABLE_CUDASIM=1`` this runs
    in Numba's CUDA simulator (how the tests exercise it without a GPU). Its arguments: ``(seed,
    first primary, primaries, simulated electrons per pixel, beam, volume, tables, counts (G, E,
    P), tallies (slots, N_TALLIES))``, the named tuples holding device arrays.
    """
    global _CUDA_KERNEL
    if _CUDA_KERNEL is None:
        from numba import cuda

        namespace = {}
        for module in (*_KERNEL_MODULES, sys.modules[__name__]):
            namespace.update(vars(module))
        namespace["cuda"] = cuda
        for fn in build.DEVICE_FUNCTIONS:
            rebound = types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__, fn.__closure__)
            namespace[fn.__name__] = cuda.jit(device=True)(rebound)
        kernel = types.FunctionType(_cuda_transport.__code__, namespace, "cuda_transport")
        _CUDA_KERNEL = cuda.jit(fastmath=True)(kernel)
    return _CUDA_KERNEL


def set_cpu_threads(threads: int | None) -> int:
    """Set Numba's CPU threads (``None``: all cores) and return the number in use."""
    limit = numba.config.NUMBA_NUM_THREADS
    numba.set_num_threads(limit if threads is None else max(1, min(int(threads), limit)))
    return numba.get_num_threads()
