"""Pack a results folder into one archive under a size limit: ``python -m benchmark pack RESULTS``.

Made for bringing a GPU run home (the device machine returns at most 64 MiB): the archive holds,
in this order of priority, until the limit is reached,

1. the results: ``results.parquet``, ``main_job.json``;
2. every model's record: ``method.json``, ``summary.json``, ``history.csv``;
3. the best weights of the chosen models (default: the smallest trained BSE-VoxNets model) in
   half precision, loadable with ``torch.load`` (``*.fp16.pt``);
4. the single-file ``report.html`` and the training curves;
5. every run's ``summary.json`` and ``rows.parquet``, the thresholds chosen on validation, the
   dataset's manifest and splits;
6. the runs' reconstructed volumes, smallest first, while they fit.

Sizes are counted as compressed so far plus the next file's raw size, so the archive never
exceeds the limit.

What did not fit is listed in ``PACK_MANIFEST.json`` inside the archive. The dataset itself stays
where it is; the manifest records its size on disk.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path

from datasets.errors import look_up

MIB = 2**20
#: the config order of BSE-VoxNets from small to large (paper Table 2)
SMALL_FIRST = ("tiny", "matched", "lite", "small", "medium", "moderate", "base")


def _size_on_disk(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def _candidates(root: Path, models: list[str] | None) -> list[tuple[str, Path | None, bytes | None]]:
    """(archive name, file, or in-memory bytes) in priority order."""
    out: list[tuple[str, Path | None, bytes | None]] = []

    def add(path: Path) -> None:
        if path.is_file():
            out.append((str(path.relative_to(root)), path, None))

    for name in ("results.parquet", "main_job.json"):
        add(root / name)
    model_dirs = sorted(p for p in (root / "models").iterdir() if p.is_dir() and not p.name.startswith(".")) \
        if (root / "models").is_dir() else []
    for directory in model_dirs:
        for name in ("method.json", "summary.json", "history.csv"):
            add(directory / name)
    for directory in _weights_to_pack(model_dirs, models):
        data = _half_precision(directory)
        if data is not None:
            out.append((f"models/{directory.name}/best.fp16.pt", None, data))
    add(root / "report.html")
    for directory in model_dirs:
        add(directory / "training_curve.png")
    run_dirs = sorted(p for p in (root / "runs").iterdir() if p.is_dir() and not p.name.startswith(".")) \
        if (root / "runs").is_dir() else []
    for directory in run_dirs:
        add(directory / "summary.json")
        add(directory / "rows.parquet")
    for path in sorted((root / "cache").glob("thresholds*")) if (root / "cache").is_dir() else []:
        add(path)
    for name in ("dataset.json", "splits.json"):
        add(root / "data" / name)
    volumes = [d / "volumes.npz" for d in run_dirs if (d / "volumes.npz").is_file()]
    for path in sorted(volumes, key=lambda p: p.stat().st_size):
        add(path)
    return out


def _weights_to_pack(model_dirs: list[Path], models: list[str] | None) -> list[Path]:
    if models:
        by_name = {d.name: d for d in model_dirs}
        return [look_up("model folder", m, by_name) for m in models]
    trained = [d for d in model_dirs if d.name.startswith("bsevox-") and (d / "summary.json").is_file()
               and (d / "best.pt").is_file()]

    def size_rank(directory: Path) -> int:
        config = directory.name.split("-")[1] if "-" in directory.name else ""
        return SMALL_FIRST.index(config) if config in SMALL_FIRST else len(SMALL_FIRST)

    return sorted(trained, key=size_rank)[:1]


def _half_precision(directory: Path) -> bytes | None:
    """The model weights of ``best.pt`` as float16 tensors (other entries dropped), serialised."""
    import torch

    path = directory / "best.pt"
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    weights = state.get("model", state)
    half = {k: (v.half() if torch.is_tensor(v) and v.is_floating_point() else v) for k, v in weights.items()}
    buffer = io.BytesIO()
    torch.save({"model": half, "n_energies": state.get("n_energies"), "energies_keV": state.get("energies_keV"),
                "epoch": state.get("epoch"), "note": "best.pt weights in float16 (benchmark pack)"}, buffer)
    return buffer.getvalue()


def pack_results(results_dir, max_mib: float = 60.0, out=None, models: list[str] | None = None) -> dict:
    """Write the archive (see module docstring); returns its manifest."""
    root = Path(results_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"results folder {root} does not exist")
    if max_mib <= 0:
        raise ValueError(f"--max-mib must be positive, got {max_mib:g}")
    out = Path(out) if out is not None else root.with_name(root.name + ".pack.tar.gz")
    limit = int(max_mib * MIB)
    data_bytes = _size_on_disk(root / "data")
    included, left_out = [], []
    tmp = out.with_name(out.name + ".tmp")
    reserve = 64 * 1024  # the manifest and tar/gzip overhead
    with tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
        for name, path, data in _candidates(root, models):
            raw = path.stat().st_size if path is not None else len(data)
            # compressed bytes so far + the next file's raw size (gzip never grows data by more than
            # a little): the archive cannot overflow
            written = tar.fileobj.fileobj.tell() if hasattr(tar.fileobj, "fileobj") else tar.fileobj.tell()
            if written + raw + reserve > limit:
                left_out.append(name)
                continue
            if path is not None:
                tar.add(path, arcname=name, recursive=False)
            else:
                info = tarfile.TarInfo(name)
                info.size, info.mtime = len(data), int(time.time())
                tar.addfile(info, io.BytesIO(data))
            included.append(name)
        manifest = {
            "results_dir": str(root.resolve()),
            "max_mib": max_mib,
            "included": included,
            "left_out": left_out,
            "dataset": {"bytes_on_disk": data_bytes,
                        "note": f"not packed: {data_bytes / MIB:.1f} MiB in {root / 'data'} (regenerate with the "
                                "same preset and seed: the geometries and noise derive from the dataset seed)"},
        }
        blob = json.dumps(manifest, indent=2).encode()
        info = tarfile.TarInfo("PACK_MANIFEST.json")
        info.size, info.mtime = len(blob), int(time.time())
        tar.addfile(info, io.BytesIO(blob))
    tmp.replace(out)
    manifest["archive"] = str(out)
    manifest["archive_mib"] = out.stat().st_size / MIB
    if out.stat().st_size > limit:
        raise RuntimeError(f"{out} is {manifest['archive_mib']:.2f} MiB, above --max-mib {max_mib:g}")
    return manifest
