"""The fused Monte Carlo transport kernel: one electron's whole history per call, CPU and CUDA.

The per-event physics is written once, as small functions in the subset of Python that Numba
compiles, each decorated with :func:`~datasets.kernel.build.device_function` (compiled with
``numba.njit`` for the CPU and recorded, so the CUDA build compiles the *same source* as CUDA
device functions). Modules:

- :mod:`~datasets.kernel.layout`: the named array groups the kernel reads (``Beam``, ``Volume``,
  ``Tables``) and their index constants and codes;
- :mod:`~datasets.kernel.build`: the compile options and the device-function registry;
- :mod:`~datasets.kernel.rng`: counter-based random numbers (a SplitMix64 stream per electron);
- :mod:`~datasets.kernel.flight`: grid lookups, free path, mirror walls, directions, barrier;
- :mod:`~datasets.kernel.elastic`: elastic angles (Browning, screened Rutherford, Mott);
- :mod:`~datasets.kernel.inelastic`: Moller hard collisions and the full-Penn event;
- :mod:`~datasets.kernel.instrument`: the probe (Gaussian entry point, energy spread) and the
  detector's response to an electron leaving the top plane (plane, annular diode, low-loss window);
- :mod:`~datasets.kernel.history`: one electron's flights and a primary's cascade;
- :mod:`~datasets.kernel.drivers`: ``run_cpu`` (``prange`` over tally bins) and the CUDA kernel
  (one thread per primary, counts summed with integer atomics).

Physics of one history (single elastic scattering with continuous slowing down, Joy 1995 ch. 3;
optionally hard inelastic collisions that create fast secondaries, and a surface barrier):

1. Free flight ``s = -ln(u) / mu``. ``mu`` is the local inverse elastic mean free path where the
   electron is at least its *safety distance* from any other material (the flight is cut there,
   without collision: the exponential is memoryless); next to a boundary it is the majorant
   ``mu* = max_m mu_m(E)`` and the collision at the flight's end is real with probability
   ``mu_m(E) / mu*`` (delta or Woodcock tracking; Woodcock et al. 1965).
2. Planes: the slab's top plane (above it, vacuum up to the detector at z = 0: an electron
   leaving upwards with E above the cutoff is scored by the detector: 1 for the default plane)
   and its bottom plane (the terminator, or a
   semi-infinite target); the flight is cut at the plane.
3. Mirror walls: lateral coordinates are folded back into the box and the direction component
   flipped (a flight may cross several mirrors).
4. Energy loss ``dE = s (S(m_start) + S(m_end)) / 2`` (trapezoid over the flight's end points):
   the whole stopping power, or only its soft part when hard collisions are simulated.
5. Real collisions are elastic or hard inelastic in proportion to their inverse mean free paths.
   Elastic: cos(theta) from the material's model, phi uniform, direction rotated. Hard inelastic
   (energy transfer W above the detector cutoff plus the binding energy, Moller): the primary
   loses W and is deflected by binary-collision kinematics; the secondary starts there with
   W - phi and is followed like a primary (from a small per-thread stack). With the full-Penn
   model every inelastic event is discrete (no continuous loss): loss, momentum transfer and
   secondary as Nebula; secondaries too slow to be detected are not followed.
6. Surface barrier: an electron reaching the top or bottom plane leaves only if its normal
   energy clears the inner-potential step and the step's quantum transmission lets it through;
   otherwise it is reflected. Energies are vacuum-referenced.

Random numbers are counter based (:mod:`~datasets.kernel.rng`), so a stack is the same for any
number of threads, processes or GPU blocks.
"""
