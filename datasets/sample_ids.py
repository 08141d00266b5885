"""Sample ids of named cases simulated several times: ``position4`` is repeat 0, ``position4@r2``
repeat 2. Kept apart from :mod:`datasets.cases` so that what reads ids (the oracle thresholds in
``methods/binarize.py``) does not depend on the case definitions: adding a case does not change
any method's code version."""

from __future__ import annotations

#: a named case's geometry simulated more than once (``DatasetPreset.case_repeats``): repeat r > 0
#: of sample ``position4`` is stored as ``position4@r<r>``
REPEAT_SEPARATOR = "@r"


def repeat_id(name: str, repeat: int) -> str:
    """The stored id of repeat ``repeat`` (0 = the sample's own name) of case sample ``name``."""
    return name if int(repeat) == 0 else f"{name}{REPEAT_SEPARATOR}{int(repeat)}"


def split_repeat(sample_id: str) -> tuple[str, int]:
    """``"position4@r2"`` -> ``("position4", 2)``; an id without a repeat -> ``(id, 0)``."""
    base, sep, repeat = str(sample_id).rpartition(REPEAT_SEPARATOR)
    if sep and base and repeat.isdigit():
        return base, int(repeat)
    return str(sample_id), 0
