"""Build reports: every env card quotes its committed ``build_report.json``, the builders' tolerance tables name
figures those reports hold, and the builder toolkit (:mod:`morbench.buildkit`) reads, compares and writes them."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest

from morbench.buildkit import (
    BuildRun,
    agreement,
    average_ranks,
    compare_reports,
    comparison_by_figure,
    comparison_failures,
    comparison_rows,
    correlation_matrices,
    pairwise_correlations,
    read_report,
    reason_classifier,
    reason_counts,
    spearman,
    write_report,
)

ENVS = Path(__file__).resolve().parents[2] / "envs"
TASKS_WITH_REPORTS = sorted(p.parent.parent.name for p in ENVS.glob("*/assets/build_report.json"))

# report path -> how the card writes that figure (a str.format template; a path to a mapping checks each value)
CARD_FIGURES: dict[str, dict[tuple[str, ...], str]] = {
    "cns": {
        ("zinc250k", "rows"): "{:,} SMILES",
        ("prior", "num_parameters"): "{:,} parameters",
        ("prior", "steps"): "{:,} steps",
        ("prior", "valid_nll"): "Validation NLL {:.3f}",
        ("prior_samples", "validity"): "| validity | {:.1%} |",
        ("prior_samples", "uniqueness"): "| {:.2%} |",
        ("prior_samples", "novelty"): "| {:.1%} |",
        ("prior_samples", "internal_diversity_unique_valid"): "| {:.3f} |",
        ("prior_samples", "unique_valid"): "| unique valid molecules | {:,} |",
        ("prior_samples", "truncated_at_max_length"): "| truncated at max_length | {} |",
        ("prior_samples", "oracle_vs_judge_bbb", "agreement_at_0.5"): "agreement at 0.5 {:.1%}",
        ("bbb_oracle", "test_auroc"): "| {:.3f} |",
        ("bbb_oracle", "num_parameters"): "| {:,} |",
        ("bbb_judge", "test_auroc"): "| {:.3f} |",
        ("bbb_judge", "num_parameters"): "| {:,} |",
    },
    "enhancer": {
        ("data", "rows"): "{:,} sequences",
        ("oracle", "test_auroc"): "| {:.3f} |",
        ("oracle", "parameters"): "| {:,} |",
        ("judge", "test_auroc"): "| {:.3f} |",
        ("judge", "parameters"): "| {:,} |",
        ("prior", "parameters"): "{:,} parameters",
        ("prior", "test_nll_bits_per_bp"): "**{:.3f} bits/bp**",
        ("evaluate", "prior_samples", "validity"): "| {:.2%} |",
        ("evaluate", "prior_samples", "kmer3_pearson"): "| {:.4f} |",
    },
    "qm9": {
        ("data", "split_sizes", "test"): "({:,} molecules)",
        ("prior", "test_nll"): "test {:.3f}",
        ("prior", "valid_nll"): "valid {:.3f}",
        ("evaluation", "prior", "validity"): "validity **{:.1%}**",
        ("evaluation", "prior", "uniqueness"): "uniqueness **{:.1%}**",
        ("evaluation", "prior", "novelty"): "**{:.1%}**",
        ("evaluation", "prior", "internal_diversity"): "internal diversity **{:.3f}**",
        ("evaluation", "prior", "unique_valid"): "{:,} unique valid prior samples",
        ("oracle", "test", "alpha_bohr3", "mae"): "| {:.3f} bohr^3 |",
        ("oracle", "test", "gap_ev", "mae"): "| {:.3f} eV |",
        ("judge", "test", "alpha_bohr3", "mae"): "| {:.3f} bohr^3 |",
        ("judge", "test", "gap_ev", "mae"): "| {:.3f} eV |",
    },
    "summarize": {
        ("data", "prompt_overhead_tokens"): "{}-token template",
        ("evaluation", "prior", "samples"): "({}: 2 per test paper",
        ("evaluation", "prior", "valid_fraction"): "{:.1%} valid",
        ("evaluation", "prior", "mean_sequence_logprob"): "log-probability {:.1f}",
        ("evaluation", "prior", "best_worst_objective_valid"): "worst objective is {:.2f}",
        ("evaluation", "prior", "mean_rewards_valid", "faithfulness"): "faithfulness {:.2f} /",
        ("evaluation", "prior", "mean_rewards_valid", "conciseness"): "conciseness {:.2f} /",
        ("evaluation", "prior", "mean_rewards_valid", "readability"): "readability {:.2f} /",
    },
}

# where each builder keeps the tolerances of its rebuild comparison
TOLERANCE_TABLES = {
    "cns": ("morbench.envs.cns.build", "TOLERANCES"),
    "enhancer": ("morbench.envs.enhancer.build_evaluate", "CHECK_TOLERANCES"),
    "qm9": ("morbench.envs.qm9.build", "REPRODUCTION_TOLERANCES"),
    "summarize": ("morbench.envs.summarize.build", "REPRODUCTION_TOLERANCES"),
}


def _report(task: str) -> dict:
    return read_report(ENVS / task / "assets" / "build_report.json")


def _figure(report: dict, path: tuple[str, ...]):
    node = report
    for key in path:
        assert isinstance(node, dict) and key in node, f"the report has no figure {'.'.join(path)}"
        node = node[key]
    return node


def test_every_task_with_a_report_has_card_figures_and_a_tolerance_table():
    assert TASKS_WITH_REPORTS, "no committed build report found"
    assert sorted(CARD_FIGURES) == TASKS_WITH_REPORTS
    assert sorted(TOLERANCE_TABLES) == TASKS_WITH_REPORTS


@pytest.mark.parametrize("task", TASKS_WITH_REPORTS)
def test_env_card_quotes_the_committed_build_report(task):
    """The card's measured figures are the build report's: a rebuild that changes them must update the card."""
    card = (ENVS / task / "README.md").read_text(encoding="utf-8")
    report = _report(task)
    missing = []
    for path, template in CARD_FIGURES[task].items():
        value = _figure(report, path)
        for key, number in value.items() if isinstance(value, dict) else [(None, value)]:
            quoted = template.format(number)
            if quoted not in card:
                missing.append(f"{'.'.join(path)}{'.' + key if key else ''} = {number!r} as {quoted!r}")
    assert not missing, f"envs/{task}/README.md does not quote its build report: {missing}"


@pytest.mark.parametrize("task", TASKS_WITH_REPORTS)
def test_builder_tolerances_name_figures_of_the_committed_report(task):
    """Every figure a rebuild is compared on exists in the committed report (a renamed key would silently
    compare nothing), and the committed report compares equal to itself."""
    module, name = TOLERANCE_TABLES[task]
    tolerances = getattr(importlib.import_module(module), name)
    report = _report(task)
    comparison = compare_reports(report, report, tolerances)
    compared = {row["figure"] for row in comparison["figures"]}
    for path in tolerances:
        assert any(f == ".".join(path) or f.startswith(".".join(path) + ".") for f in compared), path
    assert comparison["all_within_tolerance"] and not comparison_failures(comparison)


@pytest.mark.parametrize("task", TASKS_WITH_REPORTS)
def test_committed_comparison_sections_are_read_in_either_layout(task):
    report = _report(task)
    section = report.get("reproduction_check") or report.get("comparison_with_previous_build")
    if section is None:
        pytest.skip(f"the {task} report records no comparison with an earlier build")
    rows = comparison_rows(section)
    assert rows
    for row in rows:
        assert row["ok"] == (abs(row["current"] - row["previous"]) <= row["tolerance"]), row


# -- the toolkit ----------------------------------------------------------------------------------------------
def test_compare_reports_skips_missing_figures_and_expands_mappings():
    previous = {"prior": {"validity": 0.90, "nll": 0.5}, "oracle": {"auroc": {"a": 0.9, "b": 0.8}}}
    current = {"prior": {"validity": 0.93}, "oracle": {"auroc": {"a": 0.95, "b": 0.8, "c": 0.1}}}
    tolerances = {("prior", "validity"): 0.01, ("prior", "nll"): 0.1, ("oracle", "auroc"): 0.02, ("judge",): 1.0}
    check = compare_reports(previous, current, tolerances)
    assert check["compared"] == 3 and not check["all_within_tolerance"]
    rows = comparison_by_figure(check)
    assert set(rows) == {"prior.validity", "oracle.auroc.a", "oracle.auroc.b"}
    assert not rows["prior.validity"]["ok"] and rows["oracle.auroc.b"]["ok"]
    assert comparison_failures(check) == [
        "prior.validity: 0.9 -> 0.93 (tolerance 0.01)",
        "oracle.auroc.a: 0.9 -> 0.95 (tolerance 0.02)",
    ]
    # both layouts read back to the same rows
    assert comparison_rows(check) == comparison_rows(comparison_by_figure(check)) == check["figures"]


def test_spearman_gives_tied_values_their_mean_rank():
    np.testing.assert_array_equal(average_ranks(np.array([3.0, 1.0, 3.0, 2.0])), [3.5, 1.0, 3.5, 2.0])
    a, b = np.array([0.0, 0.0, 0.0, 1.0, 2.0]), np.array([0.0, 1.0, 0.0, 1.0, 2.0])
    # ranks (2, 2, 2, 4, 5) and (1.5, 3.5, 1.5, 3.5, 5): Pearson r of the ranks
    ra, rb = np.array([2, 2, 2, 4, 5.0]), np.array([1.5, 3.5, 1.5, 3.5, 5])
    assert spearman(a, b) == pytest.approx(np.corrcoef(ra, rb)[0, 1])
    assert spearman(a, a) == pytest.approx(1.0)


def test_correlation_layouts_agree():
    rng = np.random.default_rng(0)
    values = rng.random((50, 3))
    columns = dict(zip(("x", "y", "z"), values.T, strict=True))
    pairs = pairwise_correlations(columns, separator="-")
    matrices = correlation_matrices(columns)
    assert set(pairs["pearson"]) == {"x-y", "x-z", "y-z"}
    assert pairs["spearman"]["x-z"] == pytest.approx(matrices["spearman"]["x"]["z"])
    assert matrices["pearson"]["y"]["y"] == pytest.approx(1.0)
    assert agreement(values, values, ("x", "y", "z"))["y"] == pytest.approx(
        {"pearson": 1.0, "spearman": 1.0, "mean_abs_difference": 0.0}
    )


def test_reason_counts_group_reasons_most_frequent_first():
    classify = reason_classifier({"RDKit cannot parse": "unparsable"}, {"fragments": "several fragments"}, str.upper)
    reasons = [None, "RDKit cannot parse 'C('", "x: 2 fragments", "RDKit cannot parse 'N('", "odd", None]
    assert reason_counts(reasons, classify) == {"unparsable": 2, "several fragments": 1, "ODD": 1}
    assert list(reason_counts(reasons, classify)) == ["unparsable", "several fragments", "ODD"]


def test_build_run_writes_a_stable_report_and_compares_with_the_previous_one(tmp_path, capsys):
    assets = tmp_path / "assets"
    first = BuildRun(assets, packages=["numpy"], command="morbench build-assets demo", threads=1, seed=3)
    assert first.previous == {} and first.environment["seed"] == 3
    assert first.environment["packages"]["numpy"] == np.__version__
    with first.stage("evaluation"):
        section = {"validity": np.float64(0.5), "sizes": (1, 2), "count": np.int64(4)}
    report = {"environment": first.environment, "evaluation": first.stamp(section, "evaluation")}
    first.finish(report, {("evaluation", "validity"): 0.01})
    written = (assets / "build_report.json").read_text(encoding="utf-8")
    assert written.endswith("}\n") and json.loads(written)["evaluation"]["sizes"] == [1, 2]
    assert list(json.loads(written)["evaluation"]) == ["validity", "sizes", "count", "built", "wall_seconds"]
    assert "reproduction_check" not in json.loads(written)  # a first build has nothing to compare with
    assert (assets / "MANIFEST.sha256").read_text().count("build_report.json") == 1

    second = BuildRun(assets, packages=["numpy"], command="morbench build-assets demo", threads=1)
    assert second.previous["evaluation"]["validity"] == 0.5
    report["evaluation"]["validity"] = 0.6
    second.finish(report, {("evaluation", "validity"): 0.01})
    check = read_report(assets / "build_report.json")["reproduction_check"]
    assert check["compared"] == 1 and not check["all_within_tolerance"]
    assert "evaluation.validity: 0.5 -> 0.6 (tolerance 0.01)" in capsys.readouterr().out


def test_write_report_refuses_objects_json_cannot_hold(tmp_path):
    with pytest.raises(TypeError, match="object"):
        write_report(tmp_path / "r.json", {"x": object()})


# -- a builder end to end on a small stand-in corpus ------------------------------------------------------------
def _small_enhancer_corpus(seed: int = 0):
    from morbench.envs.enhancer.data import TAGS, Corpus, Split
    from morbench.envs.enhancer.sequences import SEQUENCE_LENGTH, encode

    rng = np.random.default_rng(seed)
    tags = [*TAGS.values(), "hESCT0_ENCLB449ZZZ"]

    def split(size: int) -> Split:
        sequences = ["".join(rng.choice(list("ACGT"), SEQUENCE_LENGTH)) for _ in range(size)]
        tag = np.array([tags[i % len(tags)] for i in range(size)])
        labels = np.stack([tag == TAGS[cell] for cell in TAGS], axis=1).astype(np.int64)
        return Split(sequences, tag, labels, encode(sequences, SEQUENCE_LENGTH))

    return Corpus(split(32), split(16), split(32), Path("stand-in.txt"), 80)


def test_enhancer_builder_runs_its_evaluate_stage_and_writes_a_verified_report(tmp_path, monkeypatch):
    """``morbench build-assets enhancer --stages evaluate`` on the shipped models and a small stand-in corpus:
    the stage modules, the staged report and the manifest work together (no data package needed)."""
    import functools
    import shutil

    import morbench.envs.enhancer.build as build
    import morbench.envs.enhancer.data as data
    from morbench.assets import verify_manifest

    assets = tmp_path / "assets"
    shutil.copytree(ENVS / "enhancer" / "assets", assets)
    monkeypatch.setattr(data, "load_corpus", _small_enhancer_corpus)
    small = functools.partial(build.BuildConfig, prior_samples=48, sample_batch=24, throughput_sequences=32)
    monkeypatch.setattr(build, "BuildConfig", small)
    assert build.main(["--stages", "evaluate", "--assets-dir", str(assets)]) == 0
    report = read_report(assets / "build_report.json")
    assert report["build"]["last_stages"] == ["data", "evaluate"]
    assert report["build"]["command"].endswith("--stages evaluate --assets-dir " + str(assets))
    assert report["data"]["split_sizes"] == {"train": 32, "valid": 16, "test": 32}
    samples = report["evaluate"]["prior_samples"]
    assert samples["samples"] == 48 and 0.9 <= samples["validity"] <= 1.0
    assert set(report["evaluate"]["objective_correlations_prior_samples"]["HepG2~K562"]) == {"pearson", "spearman"}
    assert report["evaluate"]["hardware"]["torch_threads"] == 1
    verify_manifest(assets, "morbench build-assets enhancer")  # the report is listed, the prior keeps its own


@pytest.mark.slow
def test_qm9_builder_runs_every_stage_on_a_stand_in_table_and_compares_a_rebuild(tmp_path, monkeypatch):
    """``morbench build-assets qm9`` end to end on 1,500 molecules with made-up properties (no qm9pack needed),
    then again with ``--skip-prior``: the second report keeps the prior's section and compares every figure."""
    import gzip

    import pandas as pd

    import morbench.envs.qm9.build as build

    train = gzip.decompress((ENVS / "qm9" / "assets" / "train_smiles.txt.gz").read_bytes()).decode().split()
    smiles = train[:1000] + [s + "C" for s in train[1000:1500]]  # one carbon more: mostly outside the train split
    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        {
            "smiles": smiles,
            "alpha_bohr3": rng.normal(75, 8, len(smiles)),
            "gap_hartree": rng.normal(0.25, 0.05, len(smiles)),
            "u0_hartree": rng.normal(-400, 40, len(smiles)),
        }
    )
    monkeypatch.setattr(build, "load_qm9_table", lambda limit=None: table)
    args = ["--assets-dir", str(tmp_path), "--prior-epochs", "1", "--oracle-epochs", "1", "--prior-samples", "200"]
    assert build.main([*args, "--no-progress"]) == 0
    first = read_report(tmp_path / "build_report.json")
    assert build.main([*args, "--no-progress", "--skip-prior"]) == 0
    second = read_report(tmp_path / "build_report.json")
    assert second["prior"] == first["prior"] and second["evaluation"]["samples"] == 200
    assert second["environment"]["command"].endswith("--skip-prior")
    check = second["reproduction_check"]
    assert check["compared"] == len(build.REPRODUCTION_TOLERANCES) and check["all_within_tolerance"]


def test_enhancer_check_of_a_missing_report_is_refused_before_building(tmp_path, monkeypatch, capsys):
    """``--check`` with a path that holds no report stops before any stage runs (not an empty comparison)."""
    import morbench.envs.enhancer.build as build
    import morbench.envs.enhancer.data as data

    def no_corpus() -> None:
        raise AssertionError("the builder started before checking --check")

    monkeypatch.setattr(data, "load_corpus", no_corpus)
    with pytest.raises(SystemExit) as error:
        build.main(["--assets-dir", str(tmp_path), "--check", str(tmp_path / "missing.json")])
    assert error.value.code == 2 and "missing.json: no such report" in capsys.readouterr().err
