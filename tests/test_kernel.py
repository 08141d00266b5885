"""The fused transport kernel: counter-based random numbers, thread and device independence, and
statistical equivalence with the previous lock-step torch engine (the test oracle)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from numba import njit

from datasets import kernel
from datasets.materials import DEFAULT_MATERIALS
from datasets.physics import PhysicsConfig, PhysicsTables
from datasets.reference_transport import simulate_counts
from datasets.scene import DEFAULT_ENERGIES_KEV, paper_block
from datasets.simulate import _material_list, simulate_bulk, simulate_stack, simulate_stacks
from datasets.transport import TransportStats, material_ids_to_indices

#: the previous engine (the oracle) knows elastic scattering with continuous slowing down only
CSDA = PhysicsConfig.preset("csda")


# --------------------------------------------------------------------------- random numbers
@njit
def _uniforms(seed, n):
    out = np.empty((n, 2))
    for i in range(n):
        out[i] = kernel.uniform_pair(kernel.electron_key(seed, 0, 1, 2, i), 7)
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
    keys = {int(kernel.electron_key(*base))}
    for i in range(5):
        changed = list(base)
        changed[i] += 1
        keys.add(int(kernel.electron_key(*changed)))
    assert len(keys) == 6


# --------------------------------------------------------------------------- determinism
def _cube_geometry():
    mask = np.zeros((20, 20, 20), bool)
    mask[2:10, 5:15, 4:12] = True
    return paper_block(mask)


def test_counts_do_not_depend_on_the_number_of_threads():
    geometry = _cube_geometry()
    kwargs = dict(energies_keV=[1.0, 5.0], electrons_per_pixel=20, seed=9)
    one = simulate_stack(geometry, threads=1, **kwargs)
    two = simulate_stack(geometry, threads=2, **kwargs)
    np.testing.assert_array_equal(one.counts, two.counts)


def test_cuda_kernel_runs_in_the_cuda_simulator_and_matches_the_cpu():
    """The CUDA kernel is built from the same device functions; Numba's CUDA simulator runs it."""
    script = textwrap.dedent("""
        import warnings, numpy as np
        warnings.simplefilter("ignore", RuntimeWarning)   # uint64 wrap-around in the simulator's numpy scalars
        from datasets.materials import DEFAULT_MATERIALS
        from datasets.physics import PhysicsConfig, PhysicsTables
        from datasets.scene import paper_block
        from datasets.simulate import _material_list
        from datasets.transport import Transport, TransportStats, material_ids_to_indices
        mask = np.zeros((20, 20, 20), bool); mask[1:6, 0:8, 0:8] = True
        materials, ids = _material_list(DEFAULT_MATERIALS, [1, 2])
        for physics in (PhysicsConfig.preset("csda"), PhysicsConfig.preset("csda", elastic="mott"),
                        PhysicsConfig.preset("nebula-penn")):
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
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "cudasim ok" in result.stdout


# --------------------------------------------------------------------------- equivalence with the previous engine
def _reference_counts(geometries, energies, electrons_per_pixel, seed, physics=None):
    materials, ids = _material_list(DEFAULT_MATERIALS, np.unique(geometries))
    tables = PhysicsTables(materials, physics or CSDA)
    return simulate_counts(material_ids_to_indices(geometries, ids), energies, electrons_per_pixel, seed, tables)


def _z_scores(a_mean, b_mean, n):
    """z of the difference of two yields measured with n primaries each (binomial errors)."""
    p = 0.5 * (a_mean + b_mean)
    return (a_mean - b_mean) / np.sqrt(np.maximum(2 * p * (1 - p) / n, 1e-12))


@pytest.mark.parametrize("elastic", ["browning", "rutherford", "mott"])
def test_thin_film_yield_per_energy_matches_the_previous_engine(elastic):
    physics = PhysicsConfig.preset("csda", elastic=elastic, stopping="tabulated" if elastic == "mott" else "joyluo")
    energies = DEFAULT_ENERGIES_KEV
    new = simulate_stack(paper_block(), energies_keV=energies, electrons_per_pixel=25, seed=1, physics=physics)
    old = _reference_counts(paper_block()[None], energies, 25, 2, physics)[0]
    z = _z_scores(new.bse.mean(axis=(1, 2)), old.mean(axis=(1, 2)) / 25, 25 * 400)
    assert np.abs(z).max() < 4.0, z
    assert abs(z.mean()) < 4.0 / math.sqrt(len(z)), z  # no systematic offset across the energies


def test_copper_cube_image_matches_the_previous_engine_pixel_by_pixel():
    geometry = _cube_geometry()
    energies, n = [1.0, 3.0, 6.0], 100
    new = simulate_stack(geometry, energies_keV=energies, electrons_per_pixel=n, seed=4, physics=CSDA)
    old = _reference_counts(geometry[None], energies, n, 5)[0] / n
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
    import torch

    from datasets.materials import material_by_name
    from datasets.reference_transport import VoxelTransport

    eta, err = simulate_bulk(material, energy, electrons=40_000, seed=3, physics=CSDA)
    # the oracle on a semi-infinite 1x1x1 slab
    tables = PhysicsTables([None, material_by_name(material)], CSDA)
    transport = VoxelTransport(np.ones((1, 1, 1, 1), np.uint8), tables, semi_infinite=True)
    n = 40_000

    def source(start, stop):
        k = stop - start
        zeros = torch.zeros(k, dtype=torch.long)
        half = torch.full((k,), 0.5)
        return half, half, torch.full((k,), energy * 1e3), zeros, zeros

    old = int(transport.run(source, n, 1, torch.Generator().manual_seed(4)).sum()) / n
    assert abs(eta - old) < 4 * math.sqrt(2) * err, (eta, old)


def test_work_statistics_match_the_previous_engine():
    """Same physics, same algorithm: flights and elastic events per primary agree too."""
    geometries = np.stack([_cube_geometry(), paper_block()])
    new_stats = TransportStats()
    simulate_stacks(geometries, energies_keV=[2.0, 8.0], electrons_per_pixel=20, seed=0, stats=new_stats, physics=CSDA)
    materials, ids = _material_list(DEFAULT_MATERIALS, [1, 2])
    old_stats = TransportStats()
    simulate_counts(material_ids_to_indices(geometries, ids), [2.0, 8.0], 20, 0, PhysicsTables(materials, CSDA),
                    stats=old_stats)
    assert new_stats.primaries == old_stats.primaries
    assert new_stats.elastic_events / new_stats.primaries == pytest.approx(old_stats.elastic_events / old_stats.primaries, rel=0.03)
    assert new_stats.flights / new_stats.primaries == pytest.approx(old_stats.flights / old_stats.primaries, rel=0.05)
    assert new_stats.lost == 0


def test_simulating_leaves_torch_thread_count_alone():
    """Numba's OpenMP layer would reset torch's (shared libgomp) threads; the kernel uses the work queue."""
    script = ("import torch; torch.set_num_threads(1)\n"
              "from datasets.simulate import simulate_stack\nfrom datasets.scene import paper_block\n"
              "simulate_stack(paper_block(), energies_keV=[1.0], electrons_per_pixel=1, threads=2)\n"
              "print(torch.get_num_threads())")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "1"
