"""What every part of a benchmark shares: the preset, the results folder, device, seed, where
messages go, and the dataset (:class:`DataSource`, built on first use)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

from benchmark.cache import ResultsStore
from benchmark.presets import BenchmarkPreset


def log_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class DataSource:
    """The preset's dataset under ``<results>/data``: opened on first use, built there first (or
    its interrupted build resumed) when missing; or a dataset given already opened."""

    def __init__(self, preset: BenchmarkPreset, store: ResultsStore, device: str, progress: bool, log,
                 dataset=None):
        self.preset, self.store, self.device, self.progress, self.log = preset, store, device, progress, log
        self.opened = dataset

    def get(self, deadline: float | None = None):
        """The dataset (``deadline``: see ``datasets.builder.build_dataset``)."""
        if self.opened is None:
            from datasets.storage import open_dataset

            data_dir = self.store.data_dir
            try:
                self.opened = open_dataset(data_dir)
            except (FileNotFoundError, ValueError):
                from datasets.builder import build_dataset

                self.log(f"building dataset preset '{self.preset.dataset_preset}' into {data_dir}")
                build_dataset(data_dir, preset=self.preset.dataset_preset, device=self.device,
                              progress=self.progress, wait_for_lock=True,  # a concurrent run's build: reuse it
                              deadline=deadline)
                self.opened = open_dataset(data_dir)
        return self.opened

    def cases(self) -> list[str]:
        """Named cases stored with the dataset (from the dataset preset, before it is built)."""
        if self.opened is not None:
            return self.opened.cases()
        from datasets.presets import get_preset as get_dataset_preset

        return list(get_dataset_preset(self.preset.dataset_preset).cases)


@dataclass(frozen=True)
class Context:
    """The settings and shared objects of one benchmark (one preset, results folder and seed)."""

    preset: BenchmarkPreset
    store: ResultsStore
    device: str
    seed: int
    progress: bool
    log: Callable[[str], None]
    data: DataSource
