"""The comparison with Nebula's own stacks: reference data shipped, targets computed correctly."""

from __future__ import annotations

import numpy as np
import pytest

from datasets.cases import get_case
from datasets.errors import UnknownNameError
from datasets.nebula_reference import (
    REFERENCE_FILES,
    SI_ONLY,
    compare,
    compare_stacks,
    format_ladder,
    format_report,
    ladder,
    load_reference,
    reference_names,
)


def test_reference_stacks_are_shipped_and_match_the_named_cases():
    for name, (case, sample) in REFERENCE_FILES.items():
        ref = load_reference(name)
        [expected] = [s for s in get_case(case) if s.name == sample]
        np.testing.assert_array_equal(ref.geometry, expected.geometry)
        assert ref.bse.shape == (20, 20, 20) and ref.simulated_electrons_per_pixel == 3000
    assert load_reference(SI_ONLY).bse[-1].mean() == pytest.approx(0.0119, abs=5e-4)  # README figure
    with pytest.raises(UnknownNameError, match="known: si_only, nanocube_p1"):
        load_reference("nanocube_p9")


def _nebula(names):
    refs = {n: load_reference(n) for n in names}
    return {n: r.bse for n, r in refs.items()}, refs[SI_ONLY].energies_keV


def test_nebula_against_itself_passes_every_target():
    neb, energies = _nebula(reference_names())
    result = compare_stacks(neb, 3000, neb, 3000, energies)
    assert result["verdict"]["passed"]
    assert result["verdict"]["mean_correlation"] == pytest.approx(1.0)


def test_a_darker_film_and_a_weaker_contrast_are_caught():
    neb, energies = _nebula([SI_ONLY, "nanowire_r10"])
    ours = {SI_ONLY: neb[SI_ONLY] * 0.85, "nanowire_r10": neb["nanowire_r10"] * 0.85}
    result = compare_stacks(ours, 3000, neb, 3000, energies)
    assert result["verdict"]["film_passed"] == 0  # 15 % darker at every energy
    assert result["verdict"]["contrast_passed"] == 20  # the same contrast
    weaker = {SI_ONLY: neb[SI_ONLY], "nanowire_r10": neb[SI_ONLY] + 0.7 * (neb["nanowire_r10"] - neb[SI_ONLY])}
    result = compare_stacks(weaker, 3000, neb, 3000, energies)
    strong = [r for r in result["rows"] if r.stack == "nanowire_r10" and abs(r.nebula) >= 0.05]
    assert strong and not any(r.passed for r in strong)  # 30 % weaker contrast fails where it is measurable


def test_our_simulator_runs_the_comparison_and_prints_the_table():
    result = compare(simulated_electrons_per_pixel=3, names=[SI_ONLY, "nanocube_p1"])
    rows = result["rows"]
    assert len(rows) == 40 and all(np.isfinite(r.ours) for r in rows)
    text = format_report(result)
    assert "pure-Si film mean yield, ours / Nebula" in text and "nanocube_p1" in text


def test_the_ladder_switches_one_component_per_step_and_prints_what_it_moved():
    steps = ladder(simulated_electrons_per_pixel=2, names=[SI_ONLY, "nanocube_p1"])
    labels = [result["physics"]["label"] for _, result in steps]
    assert labels[0] == "nebula-like" and labels[-2] == "nebula-penn" and labels[-1] == "nebula-penn-mixed"
    assert len(set(labels)) == len(labels)
    names = [result["physics"] for _, result in steps]
    for before, after in zip(names, names[1:]):  # each step changes one component (penn: with its stopping)
        changed = {k for k in ("elastic", "stopping", "inelastic", "barrier") if before[k] != after[k]}
        assert changed in ({"elastic"}, {"barrier"}, {"inelastic", "stopping"})
    text = format_ladder(steps)
    assert "moved by" in text and "+ mott elastic (= nebula-penn)" in text
