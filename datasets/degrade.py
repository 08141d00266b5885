"""``python -m datasets degrade``: a BSE stack through the acquisition operators (``datasets.acquisition``).

``python -m datasets degrade STACK.npz --drift-nm 0.5 --gain-noise 0.05 --seed 3 --out OUT.npz``
writes the degraded stack (``datasets.stack.BseStack``, saved atomically) with the acquisition
record in its metadata under ``meta["acquisition"]``: the operators in the order applied
(drift, gain noise, readout noise, brightness/contrast), the seed, the sample index and the
small draws (drift shifts, per-energy gains and offsets). The stack's ``counts`` are dropped
(the degraded yields are no longer counts); the dose, cutoff and labels are kept.
"""

from __future__ import annotations

from pathlib import Path

from datasets.acquisition import (
    Acquisition,
    BrightnessContrast,
    Drift,
    GainNoise,
    ReadoutNoise,
    level,
)
from datasets.errors import UsageError
from datasets.stack import BseStack


def degrade_stack(stack: BseStack, acquisition: Acquisition, seed: int = 0, index: int = 0) -> BseStack:
    """``stack`` degraded by ``acquisition`` for sample ``index`` under ``seed``, the record in its meta."""
    bse, draws = acquisition.run(stack.bse, seed=seed, index=index)
    record = {**acquisition.describe(), "seed": int(seed), "sample_index": int(index), "draws": draws[0]}
    meta = {**stack.meta, "acquisition": record}
    return BseStack(bse=bse, energies_keV=stack.energies_keV, counts=None,
                    simulated_electrons_per_pixel=stack.simulated_electrons_per_pixel, cutoff_eV=stack.cutoff_eV,
                    meta=meta, labels=stack.labels)


def acquisition_from_args(args) -> Acquisition:
    """The operators the flags ask for, in the fixed order drift, gain, readout, brightness/contrast."""
    ops = []
    try:
        if args.level:
            ops.extend(level(args.level).operators)
        if args.drift_nm:
            ops.append(Drift(args.drift_nm, pixel_nm=args.pixel_nm))
        if args.gain_noise:
            ops.append(GainNoise(args.gain_noise))
        if args.readout_noise:
            ops.append(ReadoutNoise(args.readout_noise))
        if args.gain_range or args.offset_range:
            ops.append(BrightnessContrast(args.gain_range or (1.0, 1.0), args.offset_range or (0.0, 0.0)))
    except ValueError as err:
        if isinstance(err, UsageError):
            raise
        raise UsageError(str(err)) from err
    if not ops:
        raise UsageError("no degradation asked: give --level, --drift-nm, --gain-noise, --readout-noise, "
                         "--gain-range or --offset-range")
    return Acquisition(ops, clip=not args.no_clip)


def cmd_degrade(args) -> int:
    acquisition = acquisition_from_args(args)
    if args.seed < 0 or args.index < 0:
        raise UsageError(f"--seed and --index must be >= 0, got {args.seed} and {args.index}")
    stack = BseStack.load(args.stack)
    out = degrade_stack(stack, acquisition, seed=args.seed, index=args.index).save(args.out)
    names = ", ".join(op.name for op in acquisition.operators)
    print(f"{args.stack} -> {out} ({names}; seed {args.seed}, sample index {args.index})")
    return 0


def register_cli(subparsers) -> None:
    p = subparsers.add_parser("degrade", help="apply drift, gain/readout noise, brightness/contrast to a BSE stack",
                              description=__doc__.splitlines()[0])
    p.add_argument("stack", type=Path, help="BSE stack .npz (datasets.stack.BseStack)")
    p.add_argument("--out", type=Path, required=True, help="degraded stack .npz to write")
    p.add_argument("--level", default=None, help="a named level of datasets.acquisition.LEVELS (e.g. drift-0.5nm)")
    p.add_argument("--drift-nm", type=float, default=0.0, help="RMS drift between energies (nm; first image fixed)")
    p.add_argument("--pixel-nm", type=float, default=1.0, help="pixel size (nm) converting the drift to pixels")
    p.add_argument("--gain-noise", type=float, default=0.0, help="relative std of the per-pixel detector gain")
    p.add_argument("--readout-noise", type=float, default=0.0, help="std of additive Gaussian noise (yield units)")
    p.add_argument("--gain-range", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                   help="per-energy contrast a_e ~ U(LOW, HIGH)")
    p.add_argument("--offset-range", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                   help="per-energy brightness b_e ~ U(LOW, HIGH) (yield units)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--index", type=int, default=0, help="sample index of the stack (its own random stream)")
    p.add_argument("--no-clip", action="store_true", help="keep values outside [0, 1] (default: clipped)")
    p.set_defaults(func=cmd_degrade)
