"""morbench.findings on synthetic study results whose verdicts are known, and the generated pages."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest

from morbench.errors import ConfigError
from morbench.findings import (
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    README_END,
    README_START,
    StudyResults,
    compare,
    equivalence_verdict,
    frontier_section,
    greater_verdict,
    m_sweep_section,
    methods_section,
    render_findings,
    reward_gap_at_equal_kl,
    write_findings,
)
from morbench.study import STUDY_FORMAT

SEEDS = (0, 1, 2, 3, 4)


def _payload(name: str, rows: dict[str, dict], rewards: dict[str, list[float]], icv=None, scale="paper") -> dict:
    """A study.json with one protocol record per (row, seed) holding the given average rewards."""
    records = []
    for label, values in rewards.items():
        for seed, value in zip(SEEDS, values, strict=True):
            records.append(
                {
                    "row": label,
                    "seed": seed,
                    "decoding": "protocol",
                    "temperature": 1.0,
                    "metrics": {
                        "average_reward": value,
                        "icv_samples": (icv or {}).get(label, [2.0] * 5)[seed],
                        "kl_to_prior": 1.0,
                        "per_objective_mean": {"a": value, "b": value},
                    },
                    "per_preference": [{"weights": [0.5, 0.5], "mean": [value, value], "validity": 1.0}],
                    "compute": {"sampled_tokens": 1000, "ppo_iterations": 30, "iterations_per_expert": {"a": 10}},
                    "curve": {"a": [[1, 0.1, 0.0], [2, 0.2, 0.1]]},
                }
            )
    return {
        "format": STUDY_FORMAT,
        "study": name,
        "scale": scale,
        "env_id": "morbench/Motifs-2obj-v0",
        "description": "synthetic",
        "definition": "0",
        "decodings": ["protocol"],
        "rows": [{"label": label, **row} for label, row in rows.items()],
        "complete": True,
        "missing": 0,
        "records": records,
    }


def _methods(irs: list[float], rs: list[float], morlhf: list[float], icv=None) -> dict:
    rows = {
        f"{m}/per_expert": {"method": m, "convention": "per_expert", "tags": {"group": "methods"}}
        for m in ("iterative_rs", "rewarded_soups", "morlhf")
    }
    rewards = {"iterative_rs/per_expert": irs, "rewarded_soups/per_expert": rs, "morlhf/per_expert": morlhf}
    return _payload("paper-qm9", rows, rewards, icv)


NOISE = [0.001, -0.002, 0.0015, -0.001, 0.0005]


def test_a_clear_paired_difference_holds_and_its_reverse_does_not():
    base = {s: 0.5 + n for s, n in zip(SEEDS, NOISE, strict=True)}
    better = {s: v + 0.05 + NOISE[(s + 2) % 5] for s, v in base.items()}
    assert greater_verdict(compare("x", better, base)) == HOLDS
    assert greater_verdict(compare("x", base, better)) == FAILS
    c = compare("x", better, base)
    assert c.n == 5 and c.low > 0 and c.p < 0.001


def test_identical_results_do_not_hold_and_noise_is_inconclusive():
    same = {s: 0.5 for s in SEEDS}
    assert greater_verdict(compare("x", same, dict(same))) == FAILS
    assert equivalence_verdict(compare("x", same, dict(same))) == HOLDS
    rng = np.random.default_rng(0)
    a = {s: 0.5 + float(rng.normal(0, 0.05)) for s in SEEDS}
    b = {s: 0.5 + float(rng.normal(0, 0.05)) for s in SEEDS}
    assert greater_verdict(compare("x", a, b)) == INCONCLUSIVE
    assert equivalence_verdict(compare("x", a, b)) == INCONCLUSIVE  # wide interval: neither inside nor outside


def test_one_seed_is_inconclusive_and_pairs_only_shared_seeds():
    assert greater_verdict(compare("x", {0: 1.0}, {0: 0.0})) == INCONCLUSIVE
    c = compare("x", {0: 1.0, 1: 1.1, 2: 1.2}, {1: 0.0, 2: 0.1, 3: 5.0})
    assert c.n == 2 and c.mean == pytest.approx(1.1)


def test_far_apart_is_not_equivalent():
    a = {s: 0.6 + n for s, n in zip(SEEDS, NOISE, strict=True)}
    b = {s: 0.5 for s in SEEDS}
    assert equivalence_verdict(compare("x", a, b)) == FAILS


def test_claim_one_holds_on_a_clear_ordering_and_not_on_identical_methods():
    morlhf = [0.50 + n for n in NOISE]
    rs = [0.55 + n for n in NOISE[::-1]]
    irs = [0.60 + n for n in NOISE[1:] + NOISE[:1]]
    lines, verdicts = methods_section(StudyResults(_methods(irs, rs, morlhf)))
    assert verdicts[0][1] == HOLDS, "\n".join(lines)
    assert "IterativeRS > RS > MORLHF: holds." in "\n".join(lines)
    _, verdicts = methods_section(StudyResults(_methods(rs, rs, rs)))
    assert verdicts[0][1] == FAILS  # identical: the claim does not hold
    _, verdicts = methods_section(StudyResults(_methods(morlhf, rs, irs)))
    assert verdicts[0][1] == FAILS  # reversed


def test_claim_two_reads_the_sample_icv():
    flat = [0.5] * 5
    icv = {
        "iterative_rs/per_expert": [3.0 + n for n in NOISE],
        "rewarded_soups/per_expert": [2.0 + n for n in NOISE[::-1]],
        "morlhf/per_expert": [2.5 + n for n in NOISE[1:] + NOISE[:1]],
    }
    _, verdicts = methods_section(StudyResults(_methods(flat, flat, flat, icv)))
    assert verdicts[1].verdict == HOLDS


def test_a_collapsed_seed_neither_blows_up_nor_drops_out_of_the_icv_claim():
    """paper-qm9's Rewards-in-Context `total` seeds 3 and 4 collapsed onto one molecule: their sample ICVs were
    stored as 4.05e15 (float rounding) and null (exactly equal: NaN, dropped from the mean), and the table showed
    1.01e15 [-2.2e15, 4.2e15]. The tables and tests now run on the CV (1 / ICV, 0 when collapsed), keep every seed,
    and flag the collapse."""
    flat = [0.5] * 5
    icv = {
        "iterative_rs/per_expert": [3.0 + n for n in NOISE],
        "rewarded_soups/per_expert": [2.0 + n for n in NOISE[::-1]],
        "morlhf/per_expert": [2.5 + n for n in NOISE],
    }
    payload = _methods(flat, flat, flat, icv)
    for record in payload["records"]:
        record["metrics"]["uniqueness"] = 0.9
        if record["row"] == "rewarded_soups/per_expert" and record["seed"] in (3, 4):
            # as stored before (seed 3: rounding; seed 4: null), and as stored now (+ cv_samples, the flag's input)
            record["metrics"].update(icv_samples=[4.05e15, None][record["seed"] - 3], uniqueness=0.000977)
    study = StudyResults(payload)
    assert study.values("rewarded_soups/per_expert", "cv_samples", "protocol") == pytest.approx(
        {0: 1 / 2.0005, 1: 1 / 1.9990, 2: 1 / 2.0015, 3: 1 / 4.05e15}
    )  # a record of the old layout: 1 / icv_samples where finite (the null one was re-scored, see below)
    payload["records"] = [
        {**r, "metrics": {**r["metrics"], "cv_samples": 0.0}}
        if r["row"] == "rewarded_soups/per_expert" and r["seed"] in (3, 4)
        else r
        for r in payload["records"]
    ]
    lines = "\n".join(methods_section(StudyResults(payload))[0]).splitlines()
    page = "\n".join(lines)
    assert "e+15" not in page and "000000000" not in page, page
    table = next(line for line in lines if line.startswith("| `rewarded_soups/per_expert`"))
    assert "(collapsed: seeds 3, 4)" in table and "(n = 5)" not in table
    assert "collapsed" not in next(line for line in lines if line.startswith("| `iterative_rs/per_expert`"))
    # RS's CV is now 0 on two seeds: "IterativeRS has a lower CV than RS" no longer holds on five seeds
    claim2 = [c for c in lines if c.startswith("| RS - IterativeRS (CV)")]
    assert claim2 and claim2[0].split("|")[5].strip() == "5", claim2


def noisy(level: float, shift: int = 0) -> list[float]:
    """Five seeds' values around ``level``: NOISE rotated by ``shift``."""
    return [level + NOISE[(i + shift) % 5] for i in range(5)]


def _sweep(rewards_by_m: dict[int, list[float]], morlhf: list[float], rs: list[float]) -> dict:
    t = max(rewards_by_m)
    rows = {
        f"m={m}": {"method": "iterative_rs", "convention": "per_expert", "tags": {"group": "m-sweep", "m": m, "T": t}}
        for m in rewards_by_m
    }
    rows["morlhf/per_expert"] = {"method": "morlhf", "convention": "per_expert", "tags": {"group": "references"}}
    rows["rewarded_soups/per_expert"] = {
        "method": "rewarded_soups",
        "convention": "per_expert",
        "tags": {"group": "references"},
    }
    rewards = {f"m={m}": v for m, v in rewards_by_m.items()}
    rewards.update({"morlhf/per_expert": morlhf, "rewarded_soups/per_expert": rs})
    return _payload("m-sweep", rows, rewards)


def test_an_interior_peak_holds_and_a_monotone_sweep_does_not():
    peak = {1: noisy(0.50), 4: noisy(0.60, 1), 16: noisy(0.52, 2), 32: noisy(0.50, 3)}
    lines, verdicts = m_sweep_section(StudyResults(_sweep(peak, noisy(0.50, 4), noisy(0.50, 3))))
    found = {v.claim: v.verdict for v in verdicts}
    claim3 = next(v for k, v in found.items() if k.startswith("an intermediate m"))
    assert claim3 == HOLDS, "\n".join(lines)
    # m = 1 equals MORLHF and m = T equals RS exactly: both special cases hold
    assert next(v for k, v in found.items() if "MORLHF" in k) == HOLDS
    assert next(v for k, v in found.items() if "RS" in k and "MORLHF" not in k) == HOLDS
    monotone = {1: noisy(0.40), 4: noisy(0.45, 1), 16: noisy(0.50, 2), 32: noisy(0.60, 3)}
    _, verdicts = m_sweep_section(StudyResults(_sweep(monotone, noisy(0.55, 4), noisy(0.40, 3))))
    found = {v.claim: v.verdict for v in verdicts}
    assert next(v for k, v in found.items() if k.startswith("an intermediate m")) == FAILS
    assert next(v for k, v in found.items() if "MORLHF" in k) == FAILS  # 0.40 vs 0.55


def test_every_verdict_line_reads_claim_colon_verdict():
    """Each bold verdict line under a claim's table reads '<claim>: <verdict>.' (the ICV and m lines read 'IterativeRS
    has a higher ICV than RS and MORLHF inconclusive at this power.' before)."""
    import re

    methods, _ = methods_section(StudyResults(_methods(noisy(0.6), noisy(0.55, 1), noisy(0.5, 2))))
    sweep = {1: noisy(0.50), 4: noisy(0.60, 1), 16: noisy(0.52, 2), 32: noisy(0.50, 3)}
    m_lines, _ = m_sweep_section(StudyResults(_sweep(sweep, noisy(0.50, 4), noisy(0.50, 3))))
    lines = [line for line in [*methods, *m_lines] if line.startswith("**Verdict")]
    assert len(lines) >= 5
    shape = re.compile(rf"\*\*Verdict \(.+\), .+: ({HOLDS}|{FAILS}|{INCONCLUSIVE})\.\*\*")
    assert all(shape.fullmatch(line) for line in lines), lines
    assert any("has a higher ICV than RS and MORLHF: " in line for line in lines)
    assert any("an intermediate m is optimal: " in line for line in lines)


def test_the_page_says_when_no_results_are_committed():
    page = render_findings([])
    assert "No study results are committed yet" in page and "Verdicts" not in page


def test_findings_are_regenerated_exactly_and_refuse_smoke_results(tmp_path):
    root = tmp_path / "results" / "studies"
    payload = _methods([0.6] * 5, [0.55] * 5, [0.5] * 5)
    (root / "paper-qm9").mkdir(parents=True)
    (root / "paper-qm9" / "study.json").write_text(json.dumps(payload))
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{README_START}\nstale-block\n{README_END}\n\nrest\n")
    docs = tmp_path / "docs"
    written = write_findings(root, docs, readme)
    assert set(written) == {docs / "findings.md", readme}
    page, head = (docs / "findings.md").read_text(), readme.read_text()
    assert "IterativeRS > RS > MORLHF in average reward" in page and "**holds**" in page
    assert "`iterative_rs/per_expert` | 0.600" in head and head.endswith("\n\nrest\n") and "stale-block" not in head
    assert (docs / "images" / "findings" / "paper-qm9-fronts.png").is_file()
    assert write_findings(root, docs, readme) == []  # the same inputs: byte-identical outputs
    write_findings(root, docs, readme, check=True)
    (docs / "findings.md").write_text(page + "edited\n")
    with pytest.raises(ConfigError, match=r"findings\.md"):
        write_findings(root, docs, readme, check=True)
    smoke = copy.deepcopy(payload)
    smoke["scale"] = "smoke"
    (root / "paper-qm9" / "study.json").write_text(json.dumps(smoke))
    with pytest.raises(ConfigError, match="smoke"):
        write_findings(root, docs, readme)


def test_a_readme_without_markers_is_refused(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# x\n")
    with pytest.raises(ConfigError, match="morbench:findings:start"):
        write_findings(tmp_path / "none", tmp_path / "docs", readme)


def test_the_committed_findings_page_and_readme_block_are_up_to_date():
    """docs/findings.md and the README block are what `morbench findings` makes of the committed results."""
    repo = Path(__file__).resolve().parents[1]
    write_findings(repo / "results" / "studies", repo / "docs", repo / "README.md", check=True)


def test_the_findings_command_writes_then_checks(tmp_path, capsys):
    from morbench.cli import main

    readme = tmp_path / "README.md"
    readme.write_text(f"{README_START}\n{README_END}\n")
    args = ["findings", "--root", str(tmp_path / "none"), "--docs", str(tmp_path / "docs"), "--readme", str(readme)]
    assert main(args) == 0 and "No study results are committed yet" in (tmp_path / "docs" / "findings.md").read_text()
    assert main([*args, "--check"]) == 0
    readme.write_text(f"{README_START}\nstale\n{README_END}\n")
    assert main([*args, "--check"]) == 2
    assert "differ from what `morbench findings` generates" in capsys.readouterr().err


def test_the_readme_block_says_a_study_is_partial():
    from morbench.findings import render_readme_block

    payload = _methods([0.5] * 5, [0.4] * 5, [0.3] * 5)
    assert "Partial" not in render_readme_block([payload])
    for row in payload["rows"]:
        row["seeds"] = list(range(5))
    payload["records"] = [r for r in payload["records"] if r["seed"] == 0]
    payload.update(complete=False, missing=12)
    block = render_readme_block([payload]).replace("\n", " ")
    assert "**Partial: 3 of 15 (row, seed) runs finished**" in block and "verdicts are provisional" in block


def test_the_verdicts_of_an_unfinished_study_are_marked_provisional(tmp_path):
    """A verdict drawn from some of a study's seeds may change with the rest: the summary and the study's section say
    which part it rests on (the summary used to state them bare, as if final)."""
    from morbench.findings import render_findings, study_report_files

    payload = _methods([0.5] * 5, [0.4] * 5, [0.3] * 5)
    complete = render_findings([payload])
    assert "provisional" not in complete and "complete." in complete
    for row in payload["rows"]:
        row["seeds"] = list(range(6))
    payload.update(complete=False, missing=6)
    page = render_findings([payload])
    verdicts = page.split("## Verdicts")[1].split("## Studies")[0].splitlines()
    rows = [line for line in verdicts if line.startswith("| `")]
    assert rows and all("(provisional: 15 of 18 (row, seed) runs finished)" in line for line in rows)
    assert (
        "| **holds** (provisional: 15 of 18 (row, seed) runs finished) | IterativeRS - RS " in rows[0]
    )  # verdict stays
    text = " ".join(page.split())
    assert "**incomplete: 15 of 18 (row, seed) runs finished**" in text and "verdicts are provisional" in text
    report = study_report_files(payload, tmp_path).read_text()  # the study command's own report says so too
    assert "| **holds** (provisional: 15 of 18 (row, seed) runs finished) |" in report


def test_measured_cost_counts_a_shared_run_once_and_names_the_machine():
    from morbench.findings import measured_cost, render_readme_block

    payload = _methods([0.5] * 5, [0.4] * 5, [0.3] * 5)
    payload["decodings"] = ["t0.7", "protocol"]
    machine = {"processor": "x86_64", "cpu_count": 2, "torch_threads": 1, "device": "cpu", "accelerator": "none"}
    for record in list(payload["records"]):
        run = f"{record['row']}/{record['seed']}"
        if record["row"].startswith("morlhf"):  # m-sweep's m = T is RS's run: rows that share a run count it once
            run = f"rewarded_soups/per_expert/{record['seed']}"
        record.update(identity=run, hardware=machine)
        record["compute"].update(wall_seconds=360.0, evaluation_seconds=36.0, gradient_steps=4800)
        payload["records"].append({**copy.deepcopy(record), "decoding": "t0.7", "temperature": 0.7})
    cost = measured_cost(StudyResults(payload))
    assert [(row, seeds, train, ev) for row, seeds, train, ev in cost.rows] == [
        (f"{m}/per_expert", 5, 360.0, 72.0) for m in ("iterative_rs", "rewarded_soups", "morlhf")
    ]
    assert cost.runs == 10 and cost.training_hours == pytest.approx(1.0) and cost.evaluation_hours == pytest.approx(0.2)
    assert cost.machines == ["x86_64 (CPU model not recorded), 2 cores, 1 torch thread per run, device cpu"]
    block = render_readme_block([payload]).replace("\n", " ")
    assert "10 runs: 1.0 h of training and 0.2 h of evaluation, 1.2 run-hours" in block
    page = render_findings([payload])
    assert "x86_64 (CPU model not recorded), 2 cores, 1 torch thread per run" in page.replace("\n", " ")
    # a finished study's cost is its total ("So far" read as if runs were missing from a complete study)
    assert payload["complete"] and "In all 10 runs:" in page.replace("\n", " ") and "So far" not in page
    assert "Measured cost: 10 runs:" in block
    payload["complete"] = False
    assert "So far 10 runs:" in render_findings([payload]).replace("\n", " ")
    assert "Measured cost so far: 10 runs:" in render_readme_block([payload]).replace("\n", " ")
    payload["complete"] = True
    assert (
        "| sampled tokens | gradient steps | PPO iterations / policy |" in page and "| 1,000 | 4,800 | 10.0 |" in page
    )
    for record in payload["records"]:  # since 2026-12-05 records name the CPU model (runs are bit-exact on one)
        record["hardware"] = {**machine, "cpu": "Intel(R) Xeon(R) Processor", "cpu_capability": "AVX512"}
    assert measured_cost(StudyResults(payload)).machines == [
        "Intel(R) Xeon(R) Processor (AVX512 kernels), 2 cores, 1 torch thread per run, device cpu"
    ]
    amd = {"cpu": "AMD EPYC 7B13", "cpu_capability": "AVX2"}
    payload["records"][0]["hardware"]["trained_on"] = [
        amd,
        {"cpu": "Intel(R) Xeon(R) Processor", "cpu_capability": "AVX512"},
    ]
    assert "AMD EPYC 7B13 (AVX2 kernels) then Intel(R) Xeon(R) Processor (AVX512 kernels), 2 cores" in " ".join(
        measured_cost(StudyResults(payload)).machines
    )
    for record in payload["records"]:  # records collected before they named their machine say so
        del record["hardware"]
    assert measured_cost(StudyResults(payload)).machines[0].startswith("a machine its record does not name")


def test_the_trend_in_m_is_the_mean_per_seed_slope_on_log2_m():
    """The m-sweep's descriptive trend: each seed's least-squares slope of reward on log2 m, then a t-interval."""
    from morbench.findings import m_trend, trend_verdict

    # reward = 0.6 - 0.01 * log2(m) + seed noise that is constant in m: every seed's slope is exactly -0.01
    falling = {m: {s: 0.6 - 0.01 * math.log2(m) + NOISE[s] for s in range(5)} for m in (1, 2, 4, 8, 16, 100)}
    trend = m_trend(falling)
    assert trend.n == 5 and trend.mean == pytest.approx(-0.01) and trend.high < 0
    assert trend_verdict(trend) == "falls with m"
    rising = {m: {s: 0.5 + 0.02 * math.log2(m) * (1 + NOISE[s]) for s in range(5)} for m in (1, 4, 32)}
    assert m_trend(rising).mean == pytest.approx(0.02 * (1 + sum(NOISE) / 5))
    assert trend_verdict(m_trend(rising)) == "rises with m"
    # a peak symmetric in log2 m has no trend, and a seed with fewer than three finite m is left out
    peak = {1: noisy(0.50), 4: noisy(0.60, 1), 16: noisy(0.50, 2)}
    peak_by_m = {m: dict(enumerate(values)) for m, values in peak.items()}
    peak_by_m[4][0] = float("nan")
    trend = m_trend(peak_by_m)
    assert trend.n == 4 and trend_verdict(trend) == INCONCLUSIVE
    lines, verdicts = m_sweep_section(StudyResults(_sweep(peak, noisy(0.50, 4), noisy(0.50, 3))))
    assert "\n| slope per doubling of m | 0.0000 [" in "\n".join(lines), lines
    assert not any("slope" in v.claim for v in verdicts)  # descriptive: not one of the paper's claims


def test_the_reward_gap_at_equal_kl_interpolates_in_log_kl_and_never_extrapolates():
    a = [(1.0, 0.5), (4.0, 0.7)]  # at KL 2 (halfway in log KL) A's reward is 0.6
    assert math.isclose(reward_gap_at_equal_kl(a, [(2.0, 0.55)]), 0.05)
    assert math.isclose(reward_gap_at_equal_kl([(2.0, 0.55)], a), -0.05)  # antisymmetric
    # B's 0.5..8 range holds both of A's points: A - B at KL 1 (0.5 - 0.6) and 4 (0.7 - 0.8), B's 2 against A's 0.6
    b = [(0.5, 0.5), (2.0, 0.7), (8.0, 0.9)]
    assert math.isclose(reward_gap_at_equal_kl(a, b), ((0.5 - 0.6) + (0.7 - 0.8) + (0.6 - 0.7)) / 3)
    assert math.isnan(reward_gap_at_equal_kl([(1.0, 0.5), (2.0, 0.6)], [(3.0, 0.9), (4.0, 0.9)]))  # no overlap
    assert math.isnan(reward_gap_at_equal_kl([], a))
    # a point with no positive finite KL (or no finite reward) is left out, not interpolated at log(0)
    assert math.isclose(reward_gap_at_equal_kl([*a, (0.0, 9.0), (math.nan, 9.0), (3.0, math.nan)], [(2.0, 0.55)]), 0.05)


def _frontier(curves: dict[str, list[tuple[float, list[float]]]]) -> dict:
    """A frontier study.json: per PPO method, one row per KL coefficient with (KL to the prior, rewards per seed)."""
    rows, rewards, kls = {}, {}, {}
    for method, points in curves.items():
        for coefficient, (kl, values) in zip((0.01, 0.05, 0.2), points, strict=True):
            label = f"{method}/kl={coefficient:g}"
            rows[label] = {
                "method": method,
                "convention": "per_expert",
                "tags": {"group": "frontier", "kl": coefficient},
            }
            rewards[label], kls[label] = values, kl
    rows["best_of_n/per_expert"] = {"method": "best_of_n", "convention": "per_expert", "tags": {"group": "frontier"}}
    rewards["best_of_n/per_expert"] = noisy(0.45)
    payload = _payload("frontier", rows, rewards)
    for record in payload["records"]:
        record["metrics"]["kl_to_prior"] = kls.get(record["row"], 0.2)
    return payload


def test_a_method_that_wins_reward_only_by_drifting_further_does_not_win_at_equal_kl():
    """On one shared reward-KL curve r = 0.4 + 0.1 ln(KL), IterativeRS sits further out (more KL, more reward at every
    coefficient): claim 1 would hold coefficient by coefficient, but at equal KL it does not; shifted up by 0.05 it
    does."""

    def on_curve(kls, shift=0.0, noise=0):
        return [(kl, noisy(0.4 + 0.1 * math.log(kl) + shift, noise + i)) for i, kl in enumerate(kls)]

    drifting = {
        "iterative_rs": on_curve((2.0, 4.0, 8.0)),
        "rewarded_soups": on_curve((1.0, 2.0, 4.0), 0.0, 1),
        "morlhf": on_curve((0.5, 1.0, 2.0), 0.0, 2),
    }
    lines, verdicts = frontier_section(StudyResults(_frontier(drifting)))
    assert len(verdicts) == 1 and verdicts[0][1] != HOLDS, "\n".join(lines)
    assert "at equal KL" in verdicts[0][0]
    assert any("IterativeRS - RS at equal KL" in line for line in lines)
    better = {
        **drifting,
        "iterative_rs": on_curve((2.0, 4.0, 8.0), 0.05),
        "rewarded_soups": on_curve((1.0, 2.0, 4.0), 0.03, 1),
    }
    _, verdicts = frontier_section(StudyResults(_frontier(better)))
    assert verdicts[0][1] == HOLDS
    worse = {**drifting, "iterative_rs": on_curve((2.0, 4.0, 8.0), -0.05)}
    _, verdicts = frontier_section(StudyResults(_frontier(worse)))
    assert verdicts[0][1] == FAILS
    # a frontier with only some PPO methods run yet gives its tables and no verdict
    lines, verdicts = frontier_section(StudyResults(_frontier({"iterative_rs": drifting["iterative_rs"]})))
    assert verdicts == [] and any("iterative_rs/kl=0.01" in line for line in lines)


def test_the_readme_block_gives_the_verdicts_at_the_headline_decoding_with_their_intervals():
    from morbench.findings import render_readme_block

    morlhf = [0.50 + n for n in NOISE]
    rs = [0.55 + n for n in NOISE[::-1]]
    irs = [0.60 + n for n in NOISE[1:] + NOISE[:1]]
    payload = _methods(irs, rs, morlhf)  # protocol decoding: the clear ordering holds
    payload["decodings"] = ["t0.7", "protocol"]  # t0.7 (the headline): the reversed ordering, which does not hold
    reversed_rewards = {"iterative_rs/per_expert": morlhf, "morlhf/per_expert": irs}
    for record in list(payload["records"]):
        hot = copy.deepcopy(record)
        value = reversed_rewards.get(record["row"], rs)[SEEDS.index(record["seed"])]
        hot.update(decoding="t0.7", temperature=0.7)
        hot["metrics"]["average_reward"] = value
        payload["records"].append(hot)
    block = render_readme_block([payload])
    claims = [line for line in block.splitlines() if line.startswith("| `paper-qm9` |")]
    assert len(claims) == 2, block  # claims 1 and 2 at t0.7 only; the protocol decoding's are on the findings page
    first = claims[0].split(" | ")
    assert first[1] == "IterativeRS > RS > MORLHF in average reward (`per_expert` compute convention)", first
    assert first[2] == "**does not hold**"
    gap = StudyResults(payload).values("iterative_rs/per_expert", "average_reward", "t0.7")
    rs_t07 = StudyResults(payload).values("rewarded_soups/per_expert", "average_reward", "t0.7")
    expected = compare("IterativeRS - RS", gap, rs_t07)
    assert first[3].startswith(f"IterativeRS - RS {expected.mean:.3f} [{expected.low:.3f}, {expected.high:.3f}]; RS - ")
    assert "holds**" not in block.replace("does not hold**", "")


def test_the_frontier_plot_has_a_panel_per_decoding_the_verdicts_are_given_at(tmp_path):
    """The frontier's verdicts are given at the paper's decoding and the protocol's: its plot shows both."""
    from morbench.findings import load_payloads, plot_study

    (payload,) = load_payloads(Path(__file__).resolve().parent.parent / "results" / "studies", ["frontier"])
    assert set(payload["decodings"]) == {"t0.7", "protocol"}

    def width(decodings):
        folder = tmp_path / "-".join(decodings)
        made = plot_study({**payload, "decodings": decodings}, folder)
        (link,) = made.values()
        png = (folder / link).read_bytes()
        return int.from_bytes(png[16:20], "big")  # the IHDR chunk's width

    both, one = width(payload["decodings"]), width(["t0.7"])
    assert both > 1.8 * one
