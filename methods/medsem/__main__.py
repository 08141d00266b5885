"""``python -m methods.medsem bench``: MED-SEM seconds per volume on one CPU core.

Builds a batch of test stacks from random training geometries (``datasets.geometry``) with the
MED-SEM forward model plus binomial shot noise (the reconstruction time does not depend on how
the stacks were made), then times ``MedSem.reconstruct`` with BLAS/OpenMP limited to one thread.
The PSF comes from the on-disk cache (simulated on first use: minutes on a CPU).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def bench(volumes: int = 20, repeats: int = 3, psf_electrons: int | None = None, seed: int = 0) -> dict:
    """Median seconds per volume of ``reconstruct`` over ``repeats`` runs of a ``volumes`` batch."""
    from threadpoolctl import threadpool_limits

    from datasets.geometry import random_geometry
    from datasets.scene import DEFAULT_ENERGIES_KEV, block_labels
    from methods.medsem import MedSem

    params = {} if psf_electrons is None else {"psf_electrons": psf_electrons}
    method = MedSem(**params)
    energies = np.asarray(DEFAULT_ENERGIES_KEV)
    psf = method.layer_psf(energies, progress=True)
    labels = np.stack([block_labels(random_geometry(seed + k)[0]) for k in range(volumes)]).astype(float)
    clean = method.forward_operator(energies).forward(labels) + psf.background[None, :, None, None]
    rng = np.random.default_rng(seed)
    electrons = 40
    stacks = (rng.binomial(electrons, np.clip(clean, 0, 1)) / electrons).astype(np.float32)
    timings = []
    with threadpool_limits(limits=1):
        for _ in range(repeats):
            start = time.perf_counter()
            method.reconstruct(stacks, energies)
            timings.append((time.perf_counter() - start) / volumes)
    return {
        "method": "medsem",
        "seconds_per_volume": float(np.median(timings)),
        "volumes": volumes,
        "repeats": repeats,
        "threads": 1,
        "params": method.params,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m methods.medsem", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("bench", help="print MED-SEM seconds per volume (one CPU thread)")
    cmd.add_argument("--volumes", type=int, default=20, help="volumes per timed batch")
    cmd.add_argument("--repeats", type=int, default=3, help="timed batches (the median is reported)")
    cmd.add_argument("--psf-electrons", type=int, default=None, help="PSF simulation electrons (default: method's)")
    cmd.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.volumes < 1 or args.repeats < 1:
        print("error: --volumes and --repeats must be >= 1", file=sys.stderr)
        return 2
    result = bench(args.volumes, args.repeats, args.psf_electrons)
    if args.json:
        print(json.dumps(result, default=str))
    else:
        print(f"medsem: {result['seconds_per_volume']:.4f} s per volume (1 CPU thread, median of "
              f"{args.repeats} batches of {args.volumes})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
