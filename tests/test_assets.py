"""Shared asset helpers: the build reports' reproduction check."""

from morbench.assets import reproduction_check


def test_reproduction_check_compares_only_figures_present_in_both_reports():
    previous = {"prior": {"validity": 0.90, "uniqueness": 0.97}, "oracle": {"mae": 0.30}}
    current = {"prior": {"validity": 0.93, "uniqueness": 0.97}, "judge": {"mae": 0.5}}
    tolerances = {("prior", "validity"): 0.01, ("prior", "uniqueness"): 0.0, ("oracle", "mae"): 0.1}
    check = reproduction_check(previous, current, tolerances)
    assert check["compared"] == 2 and not check["all_within_tolerance"]
    rows = {row["figure"]: row for row in check["figures"]}
    assert not rows["prior.validity"]["ok"] and rows["prior.validity"]["current"] == 0.93
    assert rows["prior.uniqueness"]["ok"]
    assert reproduction_check(previous, previous, tolerances)["all_within_tolerance"]
