"""One history: an electron's flights to its end (:func:`follow_electron`) and a primary's
cascade of secondaries (:func:`follow_primary`), shared by the CPU and CUDA drivers."""

from __future__ import annotations

import numpy as np

from datasets.kernel.build import device_function
from datasets.kernel.elastic import elastic_cos_theta
from datasets.kernel.flight import (
    azimuth_cos_sin,
    barrier_transmits,
    energy_index,
    free_path,
    mirror_fold,
    rotate_direction,
    voxel_of,
)
from datasets.kernel.inelastic import binary_cos_theta, moller_energy_transfer, penn_event
from datasets.kernel.instrument import detector_response, exit_sin_takeoff, probe_entry
from datasets.kernel.layout import (
    ABSORBED,
    DETECTED,
    FAR_NM,
    INELASTIC_PENN,
    LOST,
    P_CUTOFF_EV,
    P_INELASTIC,
    P_INV_DLOG,
    P_LOG_E0,
    P_MAX_EVENTS,
    P_MAX_FLIGHTS,
    P_VOXEL_NM,
    STOPPED,
)
from datasets.kernel.rng import (
    HARD_SALT,
    HASHES_PER_FLIGHT,
    MOLLER_TRIES,
    PENN_HASHES,
    PENN_SALT,
    SECONDARY_STRIDE,
    mix64,
    uniform_pair,
)


@device_function
def push_secondary(stack, n_stack, n_created, x, y, z, sx, sy, sz, energy):
    """Put a secondary (position nm, direction, E eV, creation index) on the cascade stack.
    Returns ``(n_stack, dropped)``: a full stack drops it (``dropped = 1``)."""
    if n_stack >= stack.shape[0]:
        return n_stack, 1
    stack[n_stack, 0] = x
    stack[n_stack, 1] = y
    stack[n_stack, 2] = z
    stack[n_stack, 3] = sx
    stack[n_stack, 4] = sy
    stack[n_stack, 5] = sz
    stack[n_stack, 6] = energy
    stack[n_stack, 7] = n_created
    return n_stack + 1, 0


@device_function
def hard_collision(hard_key, penn_key, flight, hard_rest, m_end, k, x, y, z, ux, uy, uz, energy, cos_phi, sin_phi,
                   tables, stack, n_stack, n_created):
    """A hard inelastic collision at (x, y, z) in material ``m_end`` (grid point ``k``).

    The shell j is chosen in proportion to its rate (``hard_rest`` in [0, hard rate)). Moller:
    the primary gives W to an electron bound by B_j, which leaves with W - B_j (vacuum-referenced)
    in the binary-collision direction, opposite azimuth. Full Penn: :func:`penn_event`, its
    secondary kept only if it could be detected. The secondary goes onto the cascade stack.
    Returns ``(energy, ux, uy, uz, n_stack, n_created, dropped)`` after the collision.
    """
    hard = tables.hard
    params = tables.params
    cutoff = params[P_CUTOFF_EV]
    j = 0
    n_shells = hard.shape[1] - 1
    while j < n_shells - 1 and hard_rest >= hard[m_end, 1 + j, k]:
        hard_rest -= hard[m_end, 1 + j, k]
        j += 1
    dropped = 0
    if params[P_INELASTIC] == INELASTIC_PENN:
        w, ux, uy, uz, secondary, sx, sy, sz = penn_event(
            penn_key, flight * PENN_HASHES, energy, ux, uy, uz, cos_phi, sin_phi, m_end, tables)
        energy -= w
        if secondary > cutoff:  # a slower one can never be detected: not followed
            n_created += 1
            n_stack, dropped = push_secondary(stack, n_stack, n_created, x, y, z, sx, sy, sz, secondary)
    else:
        binding = tables.surface[m_end, 1 + j]
        w = moller_energy_transfer(hard_key, flight * MOLLER_TRIES, energy, cutoff + binding)
        cos_secondary = binary_cos_theta(w / energy, energy)
        cos_primary = binary_cos_theta((energy - w) / energy, energy)
        sx, sy, sz = rotate_direction(ux, uy, uz, cos_secondary, -cos_phi, -sin_phi)
        ux, uy, uz = rotate_direction(ux, uy, uz, cos_primary, cos_phi, sin_phi)
        energy -= w
        n_created += 1
        n_stack, dropped = push_secondary(stack, n_stack, n_created, x, y, z, sx, sy, sz, w - binding)
    return energy, ux, uy, uz, n_stack, n_created, dropped


@device_function
def follow_electron(key, geometry, volume, tables, stack, n_stack, n_created):
    """Follow the electron at ``stack[n_stack]`` (x, y, z nm, ux, uy, uz, E eV) to its end.

    ``volume`` and ``tables`` are the kernel's :class:`~datasets.kernel.layout.Volume` and
    :class:`~datasets.kernel.layout.Tables`; ``geometry`` the batch index. Each flight: free path
    (local mean free path beyond the safety distance, majorant and delta tracking near a
    boundary), cut at the slab's planes (where the surface barrier transmits or reflects), folded
    at the mirror walls, trapezoid energy loss, then a real collision: hard inelastic
    (:func:`hard_collision`, its secondary pushed onto ``stack``; dropped, and counted, when the
    stack is full) or elastic. Returns ``(outcome, flights, elastic events, x, y, z (nm), E (eV),
    uz at the end (for a detected electron: the sine of its take-off angle outside,
    :func:`~datasets.kernel.instrument.exit_sin_takeoff`), n_stack, n_created, dropped)``.
    """
    x, y, z = stack[n_stack, 0], stack[n_stack, 1], stack[n_stack, 2]
    ux, uy, uz, energy = stack[n_stack, 3], stack[n_stack, 4], stack[n_stack, 5], stack[n_stack, 6]
    grid, safety, imfp, stopping, hard = volume.grid, volume.safety, tables.imfp, tables.stopping, tables.hard
    params = tables.params
    voxel_nm = params[P_VOXEL_NM]
    inv_voxel = 1.0 / voxel_nm
    cutoff = params[P_CUTOFF_EV]
    n_grid = tables.majorant.shape[0]
    nz, ny, nx = grid.shape[1], grid.shape[2], grid.shape[3]
    size_x, size_y = nx * voxel_nm, ny * voxel_nm
    z_top, z_bot = volume.planes[geometry, 0], volume.planes[geometry, 1]
    events = 0
    dropped = 0
    hard_key = mix64(key ^ HARD_SALT)
    penn_key = mix64(key ^ PENN_SALT)
    max_flights = int(params[P_MAX_FLIGHTS])
    max_events = int(params[P_MAX_EVENTS])
    for flight in range(max_flights):
        counter = flight * HASHES_PER_FLIGHT
        k = energy_index(energy, params[P_LOG_E0], params[P_INV_DLOG], n_grid)
        ix, iy, iz = voxel_of(x, inv_voxel, nx), voxel_of(y, inv_voxel, ny), voxel_of(z, inv_voxel, nz)
        m_start = grid[geometry, iz, iy, ix]
        safe = safety[geometry, iz, iy, ix]
        if safe > 0.0:  # far from other materials: local mean free path, flight cut at the safety distance
            mu = imfp[m_start, k]
            limit = safe
        else:  # near a boundary: delta tracking with the majorant
            mu = tables.majorant[k]
            limit = FAR_NM
        u_path, u_real = uniform_pair(key, counter)
        step = free_path(u_path, mu)
        candidate = step <= limit
        step = min(step, limit)
        z_end = z + step * uz
        leave_top = z_end < z_top
        leave_bottom = z_end >= z_bot
        if leave_top or leave_bottom:
            step = (z_top - z) / uz if leave_top else (z_bot - z) / uz
        x, ux = mirror_fold(x + step * ux, ux, size_x)
        y, uy = mirror_fold(y + step * uy, uy, size_y)
        z = z + step * uz
        if leave_top or leave_bottom:
            energy -= step * stopping[m_start, k]
            if energy <= cutoff:
                return ABSORBED, flight + 1, events, x, y, z, energy, uz, n_stack, n_created, dropped
            u_barrier, _ = uniform_pair(key, counter + 1)
            if barrier_transmits(energy, uz, tables.surface[m_start, 0], u_barrier):
                if leave_top:
                    sin_takeoff = exit_sin_takeoff(energy, uz, tables.surface[m_start, 0])
                    return DETECTED, flight + 1, events, x, y, z, energy, sin_takeoff, n_stack, n_created, dropped
                return ABSORBED, flight + 1, events, x, y, z, energy, uz, n_stack, n_created, dropped
            uz = -uz  # reflected back into the slab at the plane
            z = z_top if leave_top else z_bot - 1.0e-7 * voxel_nm
            continue
        if safe > 0.0:  # stayed inside its own material
            m_end = m_start
            energy -= step * stopping[m_start, k]
            real = candidate
        else:
            m_end = grid[geometry, voxel_of(z, inv_voxel, nz), voxel_of(y, inv_voxel, ny), voxel_of(x, inv_voxel, nx)]
            energy -= 0.5 * step * (stopping[m_start, k] + stopping[m_end, k])
            real = candidate and u_real * mu < imfp[m_end, k]  # a real, not a null, collision
        if energy <= cutoff:
            return ABSORBED, flight + 1, events, x, y, z, energy, uz, n_stack, n_created, dropped
        if not real:
            continue
        cos_phi, sin_phi = azimuth_cos_sin(key, counter + 2)
        hard_rest = u_real * mu - (imfp[m_end, k] - hard[m_end, 0, k])  # in [0, hard) for a hard collision
        if hard[m_end, 0, k] > 0.0 and hard_rest >= 0.0:
            energy, ux, uy, uz, n_stack, n_created, d = hard_collision(
                hard_key, penn_key, flight, hard_rest, m_end, k, x, y, z, ux, uy, uz, energy, cos_phi, sin_phi,
                tables, stack, n_stack, n_created)
            dropped += d
            if energy <= cutoff:
                return ABSORBED, flight + 1, events, x, y, z, energy, uz, n_stack, n_created, dropped
        else:
            events += 1
            if events >= max_events:
                return STOPPED, flight + 1, events, x, y, z, energy, uz, n_stack, n_created, dropped
            u_model, u_angle = uniform_pair(key, counter + 1)
            cos_theta = elastic_cos_theta(tables, m_end, energy, u_model, u_angle)
            ux, uy, uz = rotate_direction(ux, uy, uz, cos_theta, cos_phi, sin_phi)
    return LOST, max_flights, events, x, y, z, energy, uz, n_stack, n_created, dropped


@device_function
def follow_primary(key, x, y, energy, sigma_nm, spread_eV, geometry, volume, tables, stack):
    """Follow one primary entering the slab's top plane along +z, and its cascade.

    The beam aims at (x, y) nm with energy E0 eV; :func:`probe_entry` moves the entry point by
    the Gaussian probe (``sigma_nm``, folded between the mirror walls) and draws the energy
    spread (``spread_eV``). The primary is the cascade's first electron; each secondary is
    followed after it, last created first, with its own random stream ``mix64(key + index *
    SECONDARY_STRIDE)``. An electron leaving the top plane scores :func:`detector_response`.
    Returns ``(primary outcome, tally increment, detected electrons, flights, elastic events,
    x, y, z where the primary ended, lost electrons, secondaries created, secondaries dropped)``.
    """
    beam_eV = energy
    params = tables.params
    if sigma_nm > 0.0 or spread_eV > 0.0:
        x, y, energy = probe_entry(key, x, y, energy, sigma_nm, spread_eV)
        voxel_nm = params[P_VOXEL_NM]
        x, _ = mirror_fold(x, 0.0, volume.grid.shape[3] * voxel_nm)
        y, _ = mirror_fold(y, 0.0, volume.grid.shape[2] * voxel_nm)
    stack[0, 0] = x
    stack[0, 1] = y
    stack[0, 2] = volume.planes[geometry, 0]
    stack[0, 3] = 0.0
    stack[0, 4] = 0.0
    stack[0, 5] = 1.0
    stack[0, 6] = energy
    stack[0, 7] = 0.0
    n_stack = 1
    n_created = 0
    signal = np.int64(0)
    detected = 0
    flights = 0
    events = 0
    lost = 0
    dropped = 0
    primary_outcome = ABSORBED
    primary_x, primary_y, primary_z = 0.0, 0.0, 0.0
    first = True
    while n_stack > 0:
        n_stack -= 1
        index = stack[n_stack, 7]
        electron_key_i = key if first else mix64(key + np.uint64(index) * SECONDARY_STRIDE)
        outcome, f, v, x_end, y_end, z_end, e_end, uz_end, n_stack, n_created, d = follow_electron(
            electron_key_i, geometry, volume, tables, stack, n_stack, n_created)
        if first:
            primary_outcome = outcome
            primary_x, primary_y, primary_z = x_end, y_end, z_end
            first = False
        flights += f
        events += v
        dropped += d
        if outcome == DETECTED:
            response = detector_response(params, e_end, uz_end, beam_eV)
            if response > 0:
                signal += response
                detected += 1
        elif outcome == LOST:
            lost += 1
    return primary_outcome, signal, detected, flights, events, primary_x, primary_y, primary_z, lost, n_created, dropped
