"""The ``standard`` preset: the quick design at the scaling study's N = 4,000 point."""

import dataclasses

from benchmark.presets import get_preset
from benchmark.scaling_study import STUDY_PRESETS
from datasets.presets import get_preset as get_dataset_preset
from datasets.splits import make_splits
from methods.train_settings import TRAIN_PRESETS


def test_standard_trains_for_the_scaling_studys_step_budget_at_its_training_size():
    data = get_dataset_preset("standard")
    splits = make_splits([f"g{i}" for i in range(data.n_geometries)], data.test_fraction, data.val_fraction, 0)
    n_train = len(splits["train"])
    assert (n_train, len(splits["val"]), len(splits["test"])) == (3240, 360, 400)
    settings = TRAIN_PRESETS["standard"]
    epochs, steps = STUDY_PRESETS["paper-cpu"].step_rule.epochs(n_train, settings.batch_size)
    assert settings.epochs == epochs == 14 and steps == 1428


def test_standard_is_the_quick_design_with_more_geometries():
    quick, standard = get_preset("quick"), get_preset("standard")
    assert (standard.dataset_preset, standard.train_preset) == ("standard", "standard")
    assert dataclasses.replace(standard, name="quick", description=quick.description, dataset_preset="quick",
                               train_preset="quick") == quick
    quick_data, standard_data = get_dataset_preset("quick"), get_dataset_preset("standard")
    assert standard_data.n_geometries == 4 * quick_data.n_geometries
    assert dataclasses.replace(standard_data, name="quick", description=quick_data.description,
                               n_geometries=quick_data.n_geometries, shard_size=quick_data.shard_size) == quick_data
    assert dataclasses.replace(TRAIN_PRESETS["standard"], epochs=TRAIN_PRESETS["quick"].epochs) == TRAIN_PRESETS["quick"]
