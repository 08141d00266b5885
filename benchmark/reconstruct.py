"""``python -m benchmark reconstruct``: one BSE stack in, a reconstructed volume with its metadata out.

Output formats, chosen by the name given to ``--out``:

- ``VOLUME.npz`` (the default; a name without a suffix gets ``.npz``): named arrays
  ``probability`` (D, H, W) float32 Cu probability, ``binary`` (D, H, W) uint8 Cu mask,
  ``voxel_size_nm`` and ``origin_nm`` (z, y, x), and ``meta_json``, the metadata as one JSON string;
- ``VOLUME.nii.gz`` / ``VOLUME.nii``: NIfTI-1 images for medical and microscopy viewers, the
  probability in ``VOLUME.nii.gz`` and the mask in ``VOLUME_binary.nii.gz``, data indexed
  [x, y, z] and the affine in micrometres (NIfTI's smallest spatial unit: 1 nm = 0.001 um), the
  metadata in the JSON sidecar ``VOLUME.json``;
- ``VOLUME.npy``: the probability, ``VOLUME_binary.npy`` the mask, ``VOLUME.json`` the metadata.

The metadata (:func:`volume_metadata`) give the geometry in nm in the scene's frame (z down from
the detector plane, voxel [k, j, i] centred at ``origin_nm + (k, j, i) * voxel_size_nm``), the
Si surface depth, the method, its model folder and fingerprint, the threshold, and the dose of
the model's training data and of the stack. :func:`load_volume` reads all three formats back.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import numpy as np

from benchmark.errors import BenchmarkError, UsageError
from benchmark.listing import json_value
from datasets.errors import look_up
from datasets.files import atomic_path, write_bytes_atomic, write_text_atomic

#: the reconstruction's lateral pixel pitch in the paper scene (nm): one pixel per 1 nm voxel column
PIXEL_PITCH_NM = 1.0
#: a stack whose dose differs from the model's training data by more than this factor is warned about
DOSE_WARNING_FACTOR = 3.0
THRESHOLD_RULES_FOR_A_STACK = ("saved", "validation", "fixed-0.5")
FORMAT_VERSION = 1


# ------------------------------------------------------------------------------------------ file names
def output_format(path: Path) -> str:
    """``"npz"``, ``"nifti"`` or ``"npy"`` from the output file name."""
    name = Path(path).name.lower()
    if name.endswith((".nii.gz", ".nii")):
        return "nifti"
    if name.endswith(".npy"):
        return "npy"
    if name.endswith(".npz"):
        return "npz"
    raise UsageError(f"--out {path}: give a name ending in .npz (default format), .nii.gz / .nii (NIfTI) or "
                     ".npy")


def normalise_output(path: Path) -> Path:
    """``VOLUME`` (no suffix) -> ``VOLUME.npz``; other names are kept (and checked)."""
    path = Path(path)
    if path.suffix == "":
        path = path.with_name(path.name + ".npz")
    output_format(path)
    return path


def volume_stem(path: Path) -> str:
    name = Path(path).name
    for suffix in (".nii.gz", ".nii", ".npz", ".npy"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def output_paths(path: Path) -> dict[str, Path]:
    """Every file a reconstruction to ``path`` writes: ``volume`` and, for NIfTI and .npy,
    ``binary`` (``VOLUME_binary.*``) and the ``sidecar`` (``VOLUME.json``)."""
    path = Path(path)
    fmt = output_format(path)
    if fmt == "npz":
        return {"volume": path}
    suffix = path.name[len(volume_stem(path)):]
    return {"volume": path, "binary": path.with_name(f"{volume_stem(path)}_binary{suffix}"),
            "sidecar": path.with_name(f"{volume_stem(path)}.json")}


# ------------------------------------------------------------------------------------------ metadata
def volume_geometry(depth: int, block_z_nm=None) -> dict:
    """Voxel size and origin (nm, order z, y, x) of a (D, H, W) reconstruction over the Si block.

    The D layers split the block z in [z0, z1) evenly: voxel size (z1 - z0) / D along z, the
    pixel pitch laterally; ``origin_nm`` is the centre of voxel [0, 0, 0]; the Si surface is z0.
    """
    from datasets.scene import BLOCK_Z_NM

    z0, z1 = block_z_nm or BLOCK_Z_NM
    dz = (z1 - z0) / depth
    return {
        "axes": ["z", "y", "x"],
        "voxel_size_nm": [dz, PIXEL_PITCH_NM, PIXEL_PITCH_NM],
        "origin_nm": [z0 + dz / 2, PIXEL_PITCH_NM / 2, PIXEL_PITCH_NM / 2],
        "si_surface_z_nm": float(z0),
        "frame": "scene frame: z down into the sample from the detector plane (z = 0); voxel [k, j, i] "
                 "centred at origin_nm + (k, j, i) * voxel_size_nm",
    }


def volume_metadata(shape, *, method: str, model_dir, model_fingerprint: str, threshold: float,
                    threshold_reason: str, stack_path, energies_keV, stack_electrons_per_pixel: int | None,
                    training_electrons_per_pixel: int | None, training_dose_source: str,
                    scores: dict | None = None, acquisition: dict | None = None) -> dict:
    """Everything needed to place and trust a reconstructed volume, as a JSON-ready dict."""
    return {
        "format": "bse-bench reconstruction",
        "format_version": FORMAT_VERSION,
        "shape": [int(n) for n in shape],
        **volume_geometry(int(shape[0])),
        "quantity": "Cu probability in [0, 1] (binary: Cu mask, probability >= threshold)",
        "method": method,
        "model_dir": None if model_dir is None else str(model_dir),
        "model_fingerprint": model_fingerprint,
        "threshold": float(threshold),
        "threshold_reason": threshold_reason,
        "stack": str(stack_path),
        "energies_keV": [float(e) for e in energies_keV],
        "stack_electrons_per_pixel": stack_electrons_per_pixel,
        "model_training_electrons_per_pixel": training_electrons_per_pixel,
        "model_training_dose_source": training_dose_source,
        "scores_against_stack_labels": None if scores is None else json_value(scores),  # NaN -> null
        **(acquisition or {}),  # stack_acquisition, model_training_acquisition(_source): acquisition_check
    }


# ------------------------------------------------------------------------------------------ write / read
def save_volume(path: Path, probability: np.ndarray, binary: np.ndarray, meta: dict) -> list[Path]:
    """Write a reconstruction in the format its name asks for, each file atomically
    (``datasets.files``); the files written."""
    paths = output_paths(path)
    fmt = output_format(path)
    probability = np.asarray(probability, dtype=np.float32)
    binary = np.asarray(binary, dtype=np.uint8)
    if fmt == "npz":
        with atomic_path(paths["volume"]) as tmp, tmp.open("wb") as handle:
            np.savez_compressed(handle, probability=probability, binary=binary,
                                voxel_size_nm=np.array(meta["voxel_size_nm"]),
                                origin_nm=np.array(meta["origin_nm"]), meta_json=np.array(json.dumps(meta)))
    elif fmt == "npy":
        for key, array in (("volume", probability), ("binary", binary)):
            with atomic_path(paths[key]) as tmp, tmp.open("wb") as handle:
                np.save(handle, array)
    else:
        for key, array in (("volume", probability), ("binary", binary)):
            data = nifti_image(array, meta).to_bytes()
            write_bytes_atomic(paths[key], gzip.compress(data) if paths[key].name.endswith(".gz") else data)
    if "sidecar" in paths:
        write_text_atomic(paths["sidecar"], json.dumps(meta, indent=1) + "\n")
    return list(paths.values())


def nifti_image(volume_zyx: np.ndarray, meta: dict):
    """A NIfTI-1 image of a (D, H, W) volume: data [x, y, z], affine in micrometres."""
    import nibabel

    nm_to_um = 1e-3
    dz, dy, dx = (v * nm_to_um for v in meta["voxel_size_nm"])
    oz, oy, ox = (v * nm_to_um for v in meta["origin_nm"])
    affine = np.array([[dx, 0, 0, ox], [0, dy, 0, oy], [0, 0, dz, oz], [0, 0, 0, 1]], dtype=float)
    image = nibabel.Nifti1Image(np.ascontiguousarray(np.transpose(volume_zyx, (2, 1, 0))), affine)
    image.header.set_xyzt_units(xyz="micron")
    image.header["descrip"] = f"bse-bench {meta['method']}; z down; metadata in sidecar .json"[:79].encode()
    return image


def load_volume(path) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """``(probability (D, H, W), binary mask or None, metadata)`` of a reconstruction file."""
    path = Path(path)
    if not path.is_file():
        raise BenchmarkError(f"no reconstruction file at {path}" + (" (a directory)" if path.is_dir() else ""))
    try:
        fmt = output_format(path)
    except UsageError as err:
        raise BenchmarkError(f"{path} is not a reconstruction: {err}") from err
    paths = output_paths(path)
    try:
        if fmt == "npz":
            with np.load(path, allow_pickle=False) as data:
                if "probability" not in data.files or "meta_json" not in data.files:
                    raise BenchmarkError(f"{path} is not a reconstruction .npz (arrays 'probability' and "
                                         f"'meta_json' expected, found {sorted(data.files)})")
                return (data["probability"], data["binary"] if "binary" in data.files else None,
                        json.loads(str(data["meta_json"])))
        meta = _read_sidecar(paths["sidecar"])
        if fmt == "npy":
            read = np.load
        else:
            import nibabel

            def read(p):
                return np.transpose(np.asanyarray(nibabel.load(str(p)).dataobj), (2, 1, 0))
        binary = read(paths["binary"]) if paths["binary"].is_file() else None
        return read(path), binary, meta
    except BenchmarkError:
        raise
    except Exception as err:  # a corrupt file of any of the three formats: one line naming it
        raise BenchmarkError(f"{path} cannot be read as a reconstruction: {err}") from err


def _read_sidecar(path: Path) -> dict:
    if not path.is_file():
        raise BenchmarkError(f"the metadata sidecar {path} is missing (written next to the volume by "
                             "`python -m benchmark reconstruct`)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise BenchmarkError(f"the metadata sidecar {path} is not valid JSON: {err}") from err


# ------------------------------------------------------------------------------------------ checks
def training_read_dose(bench, spec, klass) -> tuple[int | None, str]:
    """(read e-/pixel of the model's training data, where that figure comes from): the model's own
    ``method.json`` (``training_data``, written by ``methods.training.train``; its keys are that
    file's format) when it has it, else the read dose of the benchmark preset's dataset (a model
    fitted on bare arrays records none)."""
    if not klass.requires_training:
        return None, "no training data (a classical method)"
    recorded, info_path = recorded_training_data(bench, spec)
    if recorded.get("electrons_per_pixel"):
        return int(recorded["electrons_per_pixel"]), f"the model's method.json ({info_path})"
    from datasets.presets import get_preset as get_dataset_preset

    data_preset = get_dataset_preset(bench.preset.dataset_preset)
    return (data_preset.read_electrons_per_pixel or data_preset.simulated_electrons_per_pixel,
            f"dataset preset '{data_preset.name}' of benchmark preset '{bench.preset.name}' (not recorded by the model)")


def recorded_training_data(bench, spec) -> tuple[dict, Path]:
    """(the ``training_data`` of the model's ``method.json``, or {}; that file's path)."""
    info_path = bench.models.directory(spec) / "method.json"
    return (json.loads(info_path.read_text()).get("training_data") or {}) if info_path.is_file() else {}, info_path


def acquisition_check(args, stack, bench, spec, klass) -> dict:
    """Compare the stack's acquisition (``--probe-fwhm-nm``/``--detector``/``--pixel-nm``, else its
    metadata, else ideal for a simulated stack) with the model's training conditions (its
    ``method.json`` ``training_data.acquisition``, else the paper's ideal data); print one warning
    line when they differ; return both for the output metadata."""
    from datasets.acquisition import IDEAL_CONDITIONS, condition_differences, stack_conditions

    given = {"probe_fwhm_nm": args.probe_fwhm_nm, "detector": args.detector, "pixel_nm": args.pixel_nm}
    conditions = stack_conditions(stack.meta, stack.simulated_electrons_per_pixel is not None, **given)
    recorded, info_path = recorded_training_data(bench, spec) if klass.requires_training else ({}, None)
    trained = {**IDEAL_CONDITIONS, **recorded.get("acquisition", {})}
    source = (f"the model's method.json ({info_path})" if recorded.get("acquisition") else
              "ideal data (point beam, plane detector, 1 nm pixels, no drift): none recorded by the model")
    differences = condition_differences(conditions, trained)
    if differences:
        verb = "was trained on" if klass.requires_training else "was built for"
        print(f"warning: the stack's acquisition differs from the conditions {spec.tag()} {verb}: "
              f"{'; '.join(differences)}; its accuracy under these conditions is untested", file=sys.stderr)
    return {"stack_acquisition": conditions, "model_training_acquisition": trained,
            "model_training_acquisition_source": source}


def dose_warning(stack_electrons_per_pixel: int | None, training_electrons_per_pixel: int | None,
                 name: str) -> str | None:
    """One line when the stack's dose (e-/pixel) and the model's training dose differ by more than
    :data:`DOSE_WARNING_FACTOR` either way (the noise level, ~ 1/sqrt(dose), then differs by
    more than 1.7x); ``None`` when they agree or either is unknown."""
    if not stack_electrons_per_pixel or not training_electrons_per_pixel:
        return None
    ratio = stack_electrons_per_pixel / training_electrons_per_pixel
    if 1 / DOSE_WARNING_FACTOR <= ratio <= DOSE_WARNING_FACTOR:
        return None
    return (f"warning: the stack's dose ({stack_electrons_per_pixel:g} e-/pixel) is {max(ratio, 1 / ratio):.0f}x "
            f"{'above' if ratio > 1 else 'below'} the dose {name} was trained on "
            f"({training_electrons_per_pixel:g} e-/pixel); "
            "its accuracy at this dose is untested (see the dose case: `python -m benchmark run --case dose`)")


def label_scores(binary: np.ndarray, labels: np.ndarray) -> dict:
    """IoU of each class (Cu, Si) and their mean, precision and recall of Cu, against the labels."""
    from benchmark import metrics

    if labels.shape != binary.shape:
        raise BenchmarkError(f"the stack's labels have shape {labels.shape} [z, y, x], the reconstruction "
                             f"{binary.shape}: labels must be the Cu mask over the Si block at the method's depth")
    return {
        "iou_cu": metrics.iou(binary, labels),
        "iou_si": metrics.iou(1 - binary, 1 - labels),
        "class_mean_iou": metrics.class_mean_iou(binary, labels),
        "precision_cu": metrics.precision(binary, labels),
        "recall_cu": metrics.recall(binary, labels),
        "cu_voxels_true": int(labels.sum()),
        "cu_voxels_found": int(binary.sum()),
    }


def format_scores(scores: dict) -> str:
    """The IoU line: per class and their mean, then Cu precision and recall ("n/a" where undefined)."""
    def value(key):
        number = scores[key]
        return "n/a" if number is None or number != number else f"{number:.3f}"

    return (f"IoU against the stack's labels: Cu {value('iou_cu')}, Si {value('iou_si')}, class mean "
            f"{value('class_mean_iou')} (Cu precision {value('precision_cu')}, recall {value('recall_cu')}; "
            f"{scores['cu_voxels_true']} Cu voxels true, {scores['cu_voxels_found']} found)")


def check_energies(given_keV, trained_keV, name: str) -> None:
    """Raise naming the energies that differ between a stack and the trained method."""
    if trained_keV is None:
        return
    given = [round(float(e), 6) for e in given_keV]
    trained = [round(float(e), 6) for e in trained_keV]
    if given == trained:
        return
    missing = [e for e in trained if e not in given]
    extra = [e for e in given if e not in trained]
    parts = []
    if missing:
        parts.append(f"missing from the stack: {missing} keV")
    if extra:
        parts.append(f"not trained on: {extra} keV")
    if not parts:
        parts.append(f"same energies in another order: stack {given}, trained {trained}")
    raise BenchmarkError(f"the stack's energies differ from those {name} was trained on ({'; '.join(parts)})")


def check_lateral_size(method, tag: str, shape) -> None:
    """Refuse a lateral size a learned method was not trained on; say when a classical method
    reconstructs a size other than the paper scene's (on purpose: its operator works on any size)."""
    from datasets.scene import PAPER_SHAPE_ZYX

    shape = tuple(int(n) for n in shape)
    scene = tuple(PAPER_SHAPE_ZYX[1:])
    trained = method.image_shape or (scene if method.requires_training else None)
    if trained is not None and shape != tuple(trained):
        raise BenchmarkError(f"{tag} was trained on {trained[0]} x {trained[1]} images; the stack is "
                             f"{shape[0]} x {shape[1]}: simulate or crop it to the trained size")
    if trained is None and shape != scene:
        print(f"note: {tag} reconstructs the {shape[0]} x {shape[1]} stack as given (its operator works "
              f"on any lateral size; its PSFs come from the {scene[0]} x {scene[1]} nm paper scene)", file=sys.stderr)


# ------------------------------------------------------------------------------------------ the command
def reconstruct_stack(args, bench) -> int:
    """The ``reconstruct`` command with the arguments parsed and the benchmark ``bench`` built:
    no data are built and nothing is trained unless asked."""
    from benchmark.specs import ModelSpec, method_class, network_configs
    from methods.binarize import binarize

    stack, bse = load_stack(args)
    klass = method_class(args.method)
    configs = network_configs(args.method)
    if configs:
        config = look_up(f"{args.method} config", args.config or bench.preset.configs_for(args.method)[0],
                         {c: c for c in configs})
    else:
        config = "default"
    spec = ModelSpec(args.method, config)
    if klass.requires_training and not bench.models.is_trained(spec):
        raise BenchmarkError(
            f"{spec.tag()} is not trained in {bench.models.directory(spec)}; train it first with "
            f"`python -m benchmark run --method {args.method} --case test --preset {bench.preset.name}`")
    method = bench.models.get(spec)
    check_energies(stack.energies_keV, method.energies_keV, spec.tag())
    check_lateral_size(method, spec.tag(), bse.shape[1:])

    training_electrons_per_pixel, training_dose_source = training_read_dose(bench, spec, klass)
    stack_electrons_per_pixel = stack.simulated_electrons_per_pixel or args.electrons_per_pixel
    warning = dose_warning(stack_electrons_per_pixel, training_electrons_per_pixel, spec.tag())
    if warning:
        print(warning, file=sys.stderr)
    acquisition = acquisition_check(args, stack, bench, spec, klass)

    threshold, why = stack_threshold(bench, spec, args.threshold_rule, stack.energies_keV)
    try:
        prob = method.reconstruct(bse[None], stack.energies_keV)[0]
    except ValueError as err:
        raise BenchmarkError(str(err)) from err
    binary = binarize(prob, threshold)
    scores = None if stack.labels is None else label_scores(binary, stack.labels)
    meta = volume_metadata(
        prob.shape, method=spec.tag(), model_dir=bench.models.directory(spec) if klass.requires_training else None,
        model_fingerprint=bench.models.fingerprint(spec), threshold=threshold, threshold_reason=why,
        stack_path=args.stack, energies_keV=stack.energies_keV, stack_electrons_per_pixel=stack_electrons_per_pixel,
        training_electrons_per_pixel=training_electrons_per_pixel, training_dose_source=training_dose_source,
        scores=scores, acquisition=acquisition)
    written = save_volume(args.out, prob, binary, meta)
    print(f"{spec.tag()}: Cu probability {prob.shape} [z, y, x], voxel {meta['voxel_size_nm'][0]:g} x "
          f"{meta['voxel_size_nm'][1]:g} x {meta['voxel_size_nm'][2]:g} nm, Si surface at z = "
          f"{meta['si_surface_z_nm']:g} nm -> {', '.join(str(p) for p in written)}")
    print(f"Cu mask (threshold {threshold:.2f}: {why}; {int(binary.sum())} Cu voxels)")
    if scores is not None:
        print(format_scores(scores))
    return 0


def check_request(args) -> None:
    """Check the flags and the output path before any work (``args.out`` is normalised)."""
    if args.threshold_rule not in THRESHOLD_RULES_FOR_A_STACK:
        raise UsageError(f"threshold rule for a stack must be 'saved', 'validation' or 'fixed-0.5', got "
                         f"'{args.threshold_rule}' (oracle thresholds exist only for the paper's cases)")
    if args.electrons_per_pixel is not None and args.electrons_per_pixel < 1:
        raise UsageError(f"--electrons-per-pixel must be a positive integer, got {args.electrons_per_pixel}")
    if args.probe_fwhm_nm is not None and not args.probe_fwhm_nm >= 0:
        raise UsageError(f"--probe-fwhm-nm must be >= 0 (0: a point beam), got {args.probe_fwhm_nm}")
    if args.pixel_nm is not None and not args.pixel_nm > 0:
        raise UsageError(f"--pixel-nm must be positive, got {args.pixel_nm}")
    args.out = normalise_output(args.out)
    for target in output_paths(args.out).values():  # fail before the work, not after it
        if target.is_dir():
            raise UsageError(f"--out {target} is a directory; give a file name such as {target / 'volume.npz'}")


def load_stack(args):
    """The stack of ``--stack`` and its yields (raw counts divided by ``--electrons-per-pixel``)."""
    from datasets.stack import BseStack, check_yields

    try:
        stack = BseStack.load(args.stack)
    except (FileNotFoundError, ValueError) as err:
        raise BenchmarkError(str(err)) from err
    bse = stack.bse
    if args.electrons_per_pixel is not None:
        bse = bse / float(args.electrons_per_pixel)
    try:
        check_yields(bse, str(args.stack))
    except ValueError as err:
        raise BenchmarkError(str(err)) from err
    return stack, bse


def stack_threshold(bench, spec, rule: str, energies_keV) -> tuple[float, str]:
    """The threshold for one stack and the reason it was chosen."""
    if rule == "fixed-0.5":
        return 0.5, "fixed-0.5, as asked"
    if rule == "validation":
        return bench.thresholds.validation(spec), "chosen now on the validation split"
    saved = bench.thresholds.saved(spec)
    if saved is None:
        return 0.5, (f"default 0.5: no validation threshold saved for {spec.tag()} in {bench.store.root}; "
                     "--threshold-rule validation chooses one")
    threshold, info = saved
    trained = info.get("energies_keV")
    if trained is not None and [round(float(e), 6) for e in trained] != [round(float(e), 6) for e in energies_keV]:
        return 0.5, (f"default 0.5: the saved threshold {threshold:.2f} was chosen on stacks of other energies "
                     f"({trained[0]:g}-{trained[-1]:g} keV, {len(trained)} energies)")
    return threshold, f"saved validation threshold ({info.get('n_val', '?')} validation samples)"
