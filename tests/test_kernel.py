"""The fused transport kernel: counter-based random numbers, thread and device independence,
bit-identical counts against recorded ones, and statistical equivalence with the previous
lock-step torch engine (the test oracle, through its recorded counts).

``tests/data/kernel_counts.npz``: this kernel's counts and work statistics for a small batch, one
entry per physics choice, recorded at commit 72a2df6 (``penn_mixed``: at c55035e; a change of
random draws or arithmetic order changes them). ``tests/data/previous_engine_counts.npz``:
counts of the previous torch engine, an independent implementation of the CSDA physics with its
own random generator, recorded at commit 72a2df6 for the cases of the equivalence tests below.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from cudasim import run_in_cuda_simulator
from numba import njit

from datasets.kernel import rng
from datasets.materials import MATERIALS
from datasets.physics import PhysicsConfig
from datasets.physics_tables import PhysicsTables
from datasets.scene import DEFAULT_ENERGIES_KEV, paper_block
from datasets.simulate import _material_list, simulate_bulk, simulate_stack, simulate_stacks
from datasets.transport import Transport, TransportStats, material_ids_to_indices

DATA = Path(__file__).resolve().parent / "data"
#: the previous engine (the oracle) knows elastic scattering with continuous slowing down only
CSDA = PhysicsConfig.preset("csda")


# --------------------------------------------------------------------------- random numbers
@njit
def _uniforms(seed, n):
    out = np.empty((n, 2))
    for i in range(n):
        out[i] = rng.uniform_pair(rng.electron_key(seed, 0, 1, 2, i), 7)
    return out


def test_counter_based_uniforms_are_uniform_and_independent():
    from scipy import stats

    u = _uniforms(5, 200_000)
    assert np.all((u > 0) & (u <= 1))
    for column in u.T:
        assert stats.kstest(column, "uniform").pvalue > 1e-3
    assert abs(np.corrcoef(u[:, 0], u[:, 1])[0, 1]) < 0.01  # the two halves of one hash
    assert abs(np.corrcoef(u[:-1, 0], u[1:, 0])[0, 1]) < 0.01  # neighbouring electrons


def test_stream_keys_differ_in_every_coordinate():
    base = (3, 1, 2, 17, 5)
    keys = {int(rng.electron_key(*base))}
    for i in range(5):
        changed = list(base)
        changed[i] += 1
        keys.add(int(rng.electron_key(*changed)))
    assert len(keys) == 6


# --------------------------------------------------------------------------- determinism
def _cube_geometry():
    mask = np.zeros((20, 20, 20), bool)
    mask[2:10, 5:15, 4:12] = True
    return paper_block(mask)


def test_counts_do_not_depend_on_the_number_of_threads():
    geometry = _cube_geometry()
    kwargs = dict(energies_keV=[1.0, 5.0], simulated_electrons_per_pixel=20, seed=9)
    one = simulate_stack(geometry, threads=1, **kwargs)
    two = simulate_stack(geometry, threads=2, **kwargs)
    np.testing.assert_array_equal(one.counts, two.counts)


#: the physics choices of ``kernel_counts.npz``
RECORDED_PHYSICS = {
    "default": PhysicsConfig.preset("nebula-like"),  # the default physics until issue 19
    "csda": CSDA, "penn": PhysicsConfig.preset("nebula-penn"),
    "mott": PhysicsConfig.preset("csda", elastic="mott", stopping="tabulated"),
    "rutherford": PhysicsConfig.preset("csda", elastic="rutherford"),
    "moller": PhysicsConfig.preset("nebula-like", inelastic="moller", barrier="none"),
    "penn_mixed": PhysicsConfig.preset("nebula-penn-mixed"),
}


@pytest.mark.parametrize("name", list(RECORDED_PHYSICS))
def test_counts_are_bit_identical_to_the_recorded_ones(name):
    """Same seed, same physics: the same counts, flights, events and secondaries as recorded."""
    recorded = np.load(DATA / "kernel_counts.npz")
    mask = np.zeros((20, 20, 20), bool)
    mask[2:8, 3:12, 4:10] = True
    geometries = np.stack([paper_block(mask), paper_block()])
    materials, ids = _material_list(MATERIALS, [1, 2])
    grids = material_ids_to_indices(geometries, ids)
    tables = PhysicsTables(materials, RECORDED_PHYSICS[name])
    x, y = np.array([0.5, 3.5, 6.5, 10.5, 19.5]), np.array([0.5, 4.5, 8.5, 10.5, 19.5])
    stats = TransportStats()
    counts = Transport(grids, tables).run(x, y, [800.0, 2000.0, 6000.0], 12, 7, "cpu", stats=stats)
    np.testing.assert_array_equal(counts, recorded[name])
    np.testing.assert_array_equal([stats.primaries, stats.flights, stats.elastic_events, stats.detected, stats.lost,
                                   stats.secondaries, stats.dropped_secondaries], recorded[f"{name}_stats"])
    stopped = Transport(grids, tables, max_events=3).run(x, y, [2000.0], 12, 8, "cpu")
    np.testing.assert_array_equal(stopped, recorded[f"{name}_maxev"])


def test_cuda_kernel_runs_in_the_cuda_simulator_and_matches_the_cpu():
    """The CUDA kernel is built from the same device functions; Numba's CUDA simulator runs it."""
    script = textwrap.dedent("""
        import warnings, numpy as np
        warnings.simplefilter("ignore", RuntimeWarning)   # uint64 wrap-around in the simulator's numpy scalars
        from datasets.materials import MATERIALS
        from datasets.physics import PhysicsConfig
        from datasets.physics_tables import PhysicsTables
        from datasets.scene import paper_block
        from datasets.simulate import _material_list
        from datasets.transport import Transport, TransportStats, material_ids_to_indices
        mask = np.zeros((20, 20, 20), bool); mask[1:6, 0:8, 0:8] = True
        materials, ids = _material_list(MATERIALS, [1, 2])
        for physics in (PhysicsConfig.preset("csda"), PhysicsConfig.preset("csda", elastic="mott"),
                        PhysicsConfig.preset("nebula-penn"), PhysicsConfig.preset("nebula-penn-mixed")):
            elastic = physics.label()
            transport = Transport(material_ids_to_indices(paper_block(mask)[None], ids),
                                  PhysicsTables(materials, physics))
            x = np.array([0.5, 3.5, 10.5, 19.5]); y = np.array([0.5, 4.5, 10.5, 19.5])
            gpu, cpu = TransportStats(), TransportStats()
            a = transport.run(x, y, [1000.0, 5000.0], 20, seed=3, device="cuda", stats=gpu)
            b = transport.run(x, y, [1000.0, 5000.0], 20, seed=3, device="cpu", stats=cpu)
            assert np.array_equal(a, b), (elastic, a.ravel(), b.ravel())
            assert (gpu.flights, gpu.elastic_events) == (cpu.flights, cpu.elastic_events)
            assert gpu.device_bytes > 0 and a.sum() > 0
        print("cudasim ok")
    """)
    run_in_cuda_simulator(script, timeout=600)


# --------------------------------------------------------------------------- equivalence with the previous engine
def _previous_engine(name):
    with np.load(DATA / "previous_engine_counts.npz") as data:
        return data[name]


def _z_scores(a_mean, b_mean, n):
    """z of the difference of two yields measured with n primaries each (binomial errors)."""
    p = 0.5 * (a_mean + b_mean)
    return (a_mean - b_mean) / np.sqrt(np.maximum(2 * p * (1 - p) / n, 1e-12))


@pytest.mark.parametrize("elastic", ["browning", "rutherford", "mott"])
def test_thin_film_yield_per_energy_matches_the_previous_engine(elastic):
    physics = PhysicsConfig.preset("csda", elastic=elastic, stopping="tabulated" if elastic == "mott" else "joyluo")
    energies = DEFAULT_ENERGIES_KEV
    new = simulate_stack(paper_block(), energies_keV=energies, simulated_electrons_per_pixel=25, seed=1,
                         physics=physics)
    old = _previous_engine(f"thin_film_{elastic}")  # detected electrons per energy, 25 x 400 primaries, seed 2
    z = _z_scores(new.bse.mean(axis=(1, 2)), old / (25 * 400), 25 * 400)
    assert np.abs(z).max() < 4.0, z
    assert abs(z.mean()) < 4.0 / math.sqrt(len(z)), z  # no systematic offset across the energies


def test_copper_cube_image_matches_the_previous_engine_pixel_by_pixel():
    geometry = _cube_geometry()
    energies, n = [1.0, 3.0, 6.0], 100
    new = simulate_stack(geometry, energies_keV=energies, simulated_electrons_per_pixel=n, seed=4, physics=CSDA)
    old = _previous_engine("copper_cube") / n  # (3, 20, 20) counts, seed 5
    for e in range(len(energies)):
        a, b = new.bse[e], old[e]
        var = (a * (1 - a) + b * (1 - b)).clip(1 / n) / n
        chi2 = float(((a - b) ** 2 / var).sum())
        assert chi2 < 400 + 5 * math.sqrt(800), (energies[e], chi2)  # chi2 with 400 dof: mean 400, sd 28
    contrast = new.bse[0, 5:15, 4:12].mean() - new.bse[0, :, 14:].mean()
    assert contrast > 0.03  # the shallow cube shows at 1 keV, in both engines
    assert old[0, 5:15, 4:12].mean() - old[0, :, 14:].mean() > 0.03


@pytest.mark.parametrize("material, energy", [("Si", 1.0), ("Cu", 5.0)])
def test_bulk_eta_matches_the_previous_engine(material, energy):
    eta, err = simulate_bulk(material, energy, electrons=40_000, seed=3, physics=CSDA)
    old = int(_previous_engine(f"bulk_{material}_{energy:g}keV")) / 40_000  # semi-infinite slab, 40,000 primaries
    assert abs(eta - old) < 4 * math.sqrt(2) * err, (eta, old)


def test_work_statistics_match_the_previous_engine():
    """Same physics, same algorithm: flights and elastic events per primary agree too."""
    geometries = np.stack([_cube_geometry(), paper_block()])
    new_stats = TransportStats()
    simulate_stacks(geometries, energies_keV=[2.0, 8.0], simulated_electrons_per_pixel=20, seed=0, stats=new_stats,
                    physics=CSDA)
    primaries, flights, events = _previous_engine("work_statistics")
    assert new_stats.primaries == primaries
    assert new_stats.elastic_events / new_stats.primaries == pytest.approx(events / primaries, rel=0.03)
    assert new_stats.flights / new_stats.primaries == pytest.approx(flights / primaries, rel=0.05)
    assert new_stats.lost == 0


def test_simulating_leaves_torch_thread_count_alone():
    """Numba's OpenMP layer would reset torch's (shared libgomp) threads; the kernel uses the work queue."""
    script = ("import torch; torch.set_num_threads(1)\n"
              "from datasets.simulate import simulate_stack\nfrom datasets.scene import paper_block\n"
              "simulate_stack(paper_block(), energies_keV=[1.0], simulated_electrons_per_pixel=1, threads=2)\n"
              "print(torch.get_num_threads())")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "1"
