"""What ``python -m benchmark list`` shows: methods, network sizes, cases, presets, threshold rules.

The method part (each method's parameters, each network config's parameter count and MACs)
needs the method classes, hence torch, and builds every network on the meta device: seconds of
work. It is computed once and kept in ``$XDG_CACHE_HOME/bse-bench/`` (default ``~/.cache``)
under a hash of the sources it comes from (every file of each registered method's package and
the registry itself), so a later ``list`` imports no torch and an edited method is listed anew.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
from pathlib import Path

import numpy as np

from datasets.files import write_text_atomic

#: the part of the listing that is cached (written by :func:`compute_method_listing`)
CACHE_FORMAT = 1


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bse-bench"


def json_value(value):
    """JSON-ready value: NaN and infinities -> None, NumPy scalars -> Python numbers."""
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: json_value(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def method_sources_hash(registry: dict[str, str]) -> str:
    """SHA-256 (16 hex) of the registry and of every ``.py`` file of each registered method's
    top-level package (a lone module: that file), found without importing them."""
    digest = hashlib.sha256(json.dumps(registry, sort_keys=True).encode())
    files: set[Path] = set()
    for target in registry.values():
        top = target.partition(":")[0].split(".")[0]
        spec = importlib.util.find_spec(top)
        if spec is None:
            continue
        if spec.submodule_search_locations:
            for location in spec.submodule_search_locations:
                files.update(Path(location).rglob("*.py"))
        elif spec.origin:
            files.add(Path(spec.origin))
    for path in sorted(files):
        digest.update(str(path.name).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def compute_method_listing() -> dict:
    """``{"methods": [...], "network_configs": [...]}`` from the method classes (imports torch)."""
    from benchmark.specs import method_class, method_names, network_configs
    from methods.complexity import list_network_configs

    methods = []
    for name in method_names():
        klass = method_class(name)
        methods.append({
            "method": name,
            "requires_training": bool(klass.requires_training),
            "configs": network_configs(name),
            "parameters": {p: {"default": json_value(hp.default), "retrain": hp.retrain, "doc": hp.doc}
                           for p, hp in klass.hyperparams.items()},
        })
    sizes = [{k: json_value(v) for k, v in row.items()} for row in list_network_configs()]
    return {"methods": methods, "network_configs": sizes}


def method_listing(use_cache: bool = True) -> dict:
    """The method part of the listing, from the cache when the method sources are unchanged."""
    from methods.base import REGISTRY, available

    available()  # loads the method plugins, where the registry has them, so their sources count
    path = cache_dir() / f"list-{CACHE_FORMAT}-{method_sources_hash(REGISTRY)}.json"
    if use_cache and path.is_file():
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            pass  # unreadable: computed again and rewritten
    listing = compute_method_listing()
    if use_cache:
        try:
            write_text_atomic(path, json.dumps(listing), fsync=False)
        except OSError:
            pass  # a read-only home: list still works, only slower next time
    return listing


def case_descriptions(dataset_cases) -> dict[str, str]:
    """Every ``--case`` value for a dataset storing ``dataset_cases`` (``benchmark.cases.named_cases``
    plus geometry files), with its description (``benchmark.cases.CASE_DESCRIPTIONS``)."""
    from benchmark.cases import CASE_DESCRIPTIONS, CUSTOM_CASE_PATTERN, named_cases

    names = [*named_cases(dataset_cases), CUSTOM_CASE_PATTERN]
    return {name: CASE_DESCRIPTIONS.get(name) or "named case stored with the dataset" for name in names}


def listing(preset_name: str, use_cache: bool = True) -> dict:
    """The whole listing as one JSON-ready dict."""
    from benchmark.presets import BENCHMARK_PRESETS, get_preset
    from datasets.presets import get_preset as get_dataset_preset
    from methods.binarize import THRESHOLD_RULES

    preset = get_preset(preset_name)
    stored = get_dataset_preset(preset.dataset_preset).cases
    return {
        **method_listing(use_cache),
        "cases": [{"case": name, "description": text} for name, text in case_descriptions(stored).items()],
        "presets": [p.describe() for p in BENCHMARK_PRESETS.values()],
        "threshold_rules": list(THRESHOLD_RULES),
    }


def format_listing(listing: dict) -> str:
    """The listing as the text ``list`` prints."""
    lines = ["methods:"]
    for m in listing["methods"]:
        kind = "learned" if m["requires_training"] else "classical"
        lines.append(f"  {m['method']} ({kind})")
        for p, info in m["parameters"].items():
            retrain = ", needs retraining" if info["retrain"] else ""
            lines.append(f"      {p} = {info['default']!r}{retrain}  {info['doc']}")
    lines.append("network configs:")
    lines.append(f"  {'method':8} {'config':9} {'parameters':>12} {'GMACs/sample':>13}")
    for row in listing["network_configs"]:
        lines.append(f"  {row['method']:8} {row['config']:9} {row['parameters']:>12,} {row['macs'] / 1e9:>13.3f}")
    lines.append("cases:")
    for case in listing["cases"]:
        lines.append(f"  {case['case']:18} {case['description']}")
    lines.append("presets:")
    for p in listing["presets"]:
        lines.append(f"  {p['name']:6} {p['description']}")
    lines.append(f"threshold rules: {', '.join(listing['threshold_rules'])}")
    return "\n".join(lines)
