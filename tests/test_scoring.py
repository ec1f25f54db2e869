"""The scorer on real (tiny) runs, the benchmark sweep, and rejection of broken run directories."""

import gzip
import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

import morbench
from morbench.baselines import build_config, run_method
from morbench.benchmark import SUITES, run_benchmark, suite_jobs
from morbench.errors import ConfigError, InvalidRunError
from morbench.evaluation import evaluate
from morbench.runs import read_evaluation
from morbench.scoring import score_directory, score_evaluation, score_run

ENV = "morbench/Motifs-2obj-v0"


@pytest.fixture(scope="module")
def prior_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "prior"
    run_method("prior", ENV, out, eval_samples=32, progress=False)
    return out


def test_score_run_metrics_are_consistent_with_the_raw_samples(prior_run):
    result = score_run(prior_run)
    evaluation = read_evaluation(prior_run)
    uniform = next(e for e in evaluation["preferences"] if e["weights"] == [0.5, 0.5])
    rewards = np.asarray(uniform["rewards"])
    assert result["average_reward"] == pytest.approx(rewards.mean())
    assert result["per_objective_mean"]["motif_1"] == pytest.approx(rewards[:, 0].mean())
    assert result["validity"] == pytest.approx(np.mean(uniform["valid"]))
    assert result["kl_to_prior"] == pytest.approx(0.0, abs=1e-4)  # the prior against itself
    assert 0 <= result["hypervolume"] <= result["true_front_hypervolume"]
    assert result["igd"] > 0 and result["maximum_utility_loss"] > 0
    assert result["cardinality_plugin"] == len(result["front"]) >= result["cardinality"] >= 1
    assert {"compute", "hardware"} <= set(result)


def test_score_directory_writes_reports_and_plots(prior_run, tmp_path):
    shutil.copytree(prior_run, tmp_path / "runs" / "prior")
    payload = score_directory(tmp_path / "runs", out=tmp_path / "out")
    assert len(payload["runs"]) == 1
    summary = payload["summary"][f"{ENV}::prior"]
    assert summary["seeds"] == [0] and summary["hypervolume"]["n"] == 1
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| prior | 1 |" in report and "plots/" in report
    assert (tmp_path / "out" / "results.csv").read_text().startswith("env,method,seeds")
    pngs = sorted(p.name for p in (tmp_path / "out" / "plots").glob("*.png"))
    assert len(pngs) == 2 and all((tmp_path / "out" / "plots" / p).stat().st_size > 5000 for p in pngs)


def _corrupt(prior_run, tmp_path, edit):
    target = tmp_path / "run"
    shutil.copytree(prior_run, target)
    path = target / "evaluation.json.gz"
    evaluation = json.loads(gzip.decompress(path.read_bytes()))
    edit(evaluation)
    path.write_bytes(gzip.compress(json.dumps(evaluation).encode()))
    return target


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda e: e["preferences"][0]["rewards"][0].__setitem__(0, float("nan")), "NaN"),
        (lambda e: e["preferences"][0]["rewards"][1].pop(), "must have 2 values"),
        (lambda e: e.__setitem__("objective_names", ["a", "b", "c"]), "must list 3 numbers"),
        (lambda e: e["env"].__setitem__("version", 7), "version 7"),
        (lambda e: e["env"].__setitem__("id", "morbench/Nope-v0"), "name different envs"),
        (lambda e: e.__setitem__("format", "other/9"), "format"),
        (lambda e: e["preferences"][0].__setitem__("valid", [True]), "booleans"),
    ],
)
def test_malformed_evaluations_are_rejected_naming_file_and_problem(prior_run, tmp_path, edit, message):
    run_dir = _corrupt(prior_run, tmp_path, edit)
    with pytest.raises(InvalidRunError, match=message) as info:
        score_run(run_dir)
    assert "evaluation.json.gz" in str(info.value) or "version" in str(info.value) or "registered" in str(info.value)


def test_missing_and_incomplete_runs_are_rejected(prior_run, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(prior_run, target)
    (target / "evaluation.json.gz").unlink()
    with pytest.raises(InvalidRunError, match=r"evaluation\.json\.gz: missing"):
        score_run(target)
    record = json.loads((prior_run / "run.json").read_text())
    record["status"] = "running"
    (target / "run.json").write_text(json.dumps(record))
    with pytest.raises(InvalidRunError, match="did not complete"):
        score_run(target)
    (target / "run.json").write_text("{not json")
    with pytest.raises(InvalidRunError, match="not valid JSON"):
        score_run(target)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InvalidRunError, match="no run directories"):
        score_directory(empty)


def test_evaluate_a_custom_policy_end_to_end(tmp_path):
    task = morbench.make(ENV).unwrapped
    motifs = task.motifs

    def my_policy(preference, num_samples, seed):
        rng = np.random.default_rng(seed)
        # write more of the motif the preference favours
        first = round(float(preference[0]) * 4)
        sequence = motifs[0][:first] + motifs[1][: 6 - first]
        return [sequence if rng.random() < 0.9 else "" for _ in range(num_samples)]

    records = evaluate(
        my_policy, ENV, seeds=[0, 1], out=tmp_path, method="my-method", samples_per_preference=16, progress=False
    )
    assert len(records) == 2
    payload = score_directory(tmp_path, plots=False)
    summary = payload["summary"][f"{ENV}::my-method"]
    assert summary["seeds"] == [0, 1]
    assert summary["hypervolume"]["mean"] > 0.3  # it walks along the true front
    assert "kl_to_prior" not in summary  # a callable without log-probabilities: no KL claimed
    with pytest.raises(ConfigError, match="exactly that many"):
        evaluate(lambda w, n, s: ["A"], ENV, seeds=[0], samples_per_preference=4, progress=False)


def test_benchmark_smoke_suite_runs_and_resumes(tmp_path):
    payload = run_benchmark("smoke", tmp_path, workers=1, threads=1, progress=False, plots=False)
    assert not payload["failed"]
    assert {f"{ENV}::{m}" for m in ("iterative_rs", "morlhf", "prior")} == set(payload["summary"])
    assert "| iterative_rs |" in (tmp_path / "results.md").read_text()
    first = json.loads((tmp_path / "benchmark.json").read_text())
    again = run_benchmark("smoke", tmp_path, workers=1, threads=1, progress=False, plots=False)
    log = json.loads((tmp_path / "benchmark.json").read_text())
    assert again["summary"].keys() == payload["summary"].keys()
    # the resumed invocation ran nothing, and the log still says what the first one ran and what it cost (it was
    # overwritten by "skipped" outcomes and the second call's wall time)
    assert [i["finished"] for i in log["invocations"]] == [True, True] and log["complete"]
    assert log["jobs"] == first["jobs"] and {job["status"] for job in log["jobs"]} == {"ok"}
    assert all(job["invocation"] == 0 and job["seconds"] > 0 for job in log["jobs"])
    assert log["wall_seconds"] == pytest.approx(sum(i["wall_seconds"] for i in log["invocations"]))
    assert log["wall_seconds"] > first["wall_seconds"] and log["run_seconds"] == first["run_seconds"]
    assert log["invocations"][0]["hardware"]["cpu_count"] and log["invocations"][0]["runs"] == 3
    assert log["invocations"][0]["threads_per_run"] == 1  # the runs' threads, not this process's


def test_a_suite_resumes_in_a_fresh_clone_from_its_committed_scored_records(tmp_path):
    """Regression: a suite's finished runs lived only in their (uncommitted) folders, so a fresh checkout lost them
    all and re-ran the suite from the start (the standard suite lost 70 runs, 5.5 hours, that way). Each finished
    run now leaves a small scored record that is committed; a fresh clone counts the run as done and scores it."""
    import subprocess

    from morbench.benchmark import SCORED_DIR, check_existing_runs, read_scored

    done = tmp_path / "done"
    payload = run_benchmark("smoke", done, methods=["morlhf", "prior"], workers=1, threads=1, progress=False)
    records = sorted((done / SCORED_DIR).rglob("*.json"))
    assert [p.relative_to(done / SCORED_DIR).as_posix() for p in records] == [
        f"{ENV.replace('/', '_')}/morlhf/seed_0.json",
        f"{ENV.replace('/', '_')}/prior/seed_0.json",
    ]
    record = read_scored(records[0])
    assert record["identity"]["fields"]["method"] == "morlhf" and record["result"]["average_reward"] >= 0
    assert {e["preference"] for e in record["curve"]} and all("score_mean" in e for e in record["curve"])
    assert sum(p.stat().st_size for p in records) < 60_000  # kB, not the run's weights and samples

    clone = tmp_path / "clone"  # what a fresh clone holds: the log and the scored records, no run folders
    shutil.copytree(done / SCORED_DIR, clone / SCORED_DIR)
    shutil.copy(done / "benchmark.json", clone / "benchmark.json")
    again = run_benchmark("smoke", clone, methods=["morlhf", "prior"], workers=1, threads=1, progress=False)
    assert {o["status"] for o in json.loads((clone / "benchmark.json").read_text())["jobs"]} == {"ok"}
    assert not (clone / "runs").exists()  # nothing ran again
    for key, summary in payload["summary"].items():
        assert again["summary"][key]["average_reward"] == summary["average_reward"]
        assert again["summary"][key]["hypervolume"] == summary["hypervolume"]
    assert "| morlhf |" in (clone / "results.md").read_text()
    assert (clone / "plots" / f"{ENV.replace('/', '_')}_learning_curves.png").is_file()  # from the thinned curve

    # a record made with other settings is refused before any work, and a damaged one is named
    edited = json.loads(records[0].read_text())
    edited["identity"]["fields"]["seed"] = 7
    (clone / SCORED_DIR / records[0].relative_to(done / SCORED_DIR)).write_text(json.dumps(edited))
    with pytest.raises(ConfigError, match="other settings"):
        run_benchmark("smoke", clone, methods=["morlhf"], workers=1, threads=1, progress=False)
    (clone / SCORED_DIR / records[0].relative_to(done / SCORED_DIR)).write_text("{broken")
    with pytest.raises(ConfigError, match="not a readable scored record"):
        check_existing_runs(suite_jobs("smoke", clone, methods=["morlhf"]))

    root = Path(__file__).resolve().parents[1]
    if (root / ".git").exists() and shutil.which("git"):  # the repository commits the records, not the runs
        standard = "results/standard"
        paths = [f"{standard}/scored/x/morlhf/seed_0.json", f"{standard}/runs/x/morlhf/seed_0/run.json"]
        ignored = [subprocess.run(["git", "check-ignore", "-q", p], cwd=root).returncode == 0 for p in paths]
        assert ignored == [False, True]


def test_the_suite_log_keeps_what_a_killed_invocation_finished_and_never_overwrites_a_foreign_file(tmp_path, capsys):
    from morbench.benchmark import SuiteLog

    names = ["a seed=0", "a seed=1"]
    log = SuiteLog(tmp_path, "smoke", names, executor="local", workers=2)
    log.record({"job": "a seed=0", "status": "ok", "seconds": 12.5})  # then the process is killed
    killed = json.loads((tmp_path / "benchmark.json").read_text())
    assert killed["jobs"][0]["seconds"] == 12.5 and not killed["invocations"][0]["finished"]
    assert not killed["complete"] and killed["run_seconds"] == 12.5
    resumed = SuiteLog(tmp_path, "smoke", names, executor="local", workers=2)
    resumed.record({"job": "a seed=0", "status": "skipped (already complete)", "seconds": 0.0})
    resumed.record({"job": "a seed=1", "status": "ok", "seconds": 7.0})
    resumed.write(finished=True)
    both = json.loads((tmp_path / "benchmark.json").read_text())
    assert [(j["job"], j["invocation"], j["seconds"]) for j in both["jobs"]] == [
        ("a seed=0", 0, 12.5),
        ("a seed=1", 1, 7.0),
    ]
    assert both["complete"] and both["run_seconds"] == 19.5 and len(both["invocations"]) == 2

    old = {"suite": "smoke", "executor": "local", "workers": 1, "jobs": both["jobs"][:1], "wall_seconds": 30.0}
    (tmp_path / "benchmark.json").write_text(json.dumps(old))  # format 1: the last invocation only
    SuiteLog(tmp_path, "smoke", names, executor="local", workers=1).write(finished=True)
    upgraded = json.loads((tmp_path / "benchmark.json").read_text())
    assert upgraded["invocations"][0]["wall_seconds"] == 30.0 and upgraded["jobs"] == old["jobs"]

    for text in ("{not json", json.dumps({"suite": "standard", "jobs": [], "invocations": []})):
        (tmp_path / "benchmark.json").write_text(text)
        SuiteLog(tmp_path, "smoke", names, executor="local", workers=1)
        assert "a new log starts" in capsys.readouterr().err
    kept = sorted(p.name for p in tmp_path.glob("benchmark.json.unreadable*"))
    assert kept == ["benchmark.json.unreadable", "benchmark.json.unreadable~"]
    assert (tmp_path / "benchmark.json.unreadable").read_text() == "{not json"


def test_the_suite_log_counts_the_wall_time_of_runs_still_in_flight_when_an_invocation_is_killed(tmp_path):
    """Regression: the wall time was written only when a run ended, so an invocation killed an hour into a long
    run (whose work the next invocation resumes from its checkpoint) under-reported the suite's wall time."""
    from morbench.benchmark import SuiteLog

    log = SuiteLog(tmp_path, "smoke", ["a seed=0"], executor="local", workers=1, heartbeat=0.02)
    path, deadline = tmp_path / "benchmark.json", time.monotonic() + 10
    while json.loads(path.read_text())["wall_seconds"] < 0.1 and time.monotonic() < deadline:
        time.sleep(0.02)  # no run ends: only the heartbeat rewrites the file
    beating = json.loads(path.read_text())
    assert beating["wall_seconds"] >= 0.1 and beating["invocations"][0]["finished"] is False
    log.write(finished=True)
    final = path.read_text()
    time.sleep(0.1)
    assert path.read_text() == final and json.loads(final)["invocations"][0]["finished"] is True  # it stopped
    assert not log._beat.is_alive()


def test_benchmark_selection_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown suite"):
        suite_jobs("huge", tmp_path)
    with pytest.raises(ConfigError, match="not in the 'smoke' suite"):
        suite_jobs("smoke", tmp_path, envs=["morbench/QM9-v9"])
    with pytest.raises(ConfigError, match="unknown methods"):
        suite_jobs("smoke", tmp_path, methods=["dpo"])


def test_benchmark_on_a_local_ray_instance(tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'morbench[ray]')")
    payload = run_benchmark("smoke", tmp_path, methods=["prior", "morlhf"], executor="ray", progress=False, plots=False)
    assert not payload["failed"] and len(payload["runs"]) == 2
    assert not ray.is_initialized()


def test_score_evaluation_needs_the_uniform_preference(prior_run):
    evaluation = read_evaluation(prior_run)
    evaluation["preferences"] = [e for e in evaluation["preferences"] if e["weights"] != [0.5, 0.5]]
    with pytest.raises(InvalidRunError, match="uniform preference"):
        score_evaluation(evaluation)


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_every_suite_job_has_a_registered_env_and_a_valid_config(suite, tmp_path):
    jobs = suite_jobs(suite, tmp_path)
    assert jobs and len({job.out for job in jobs}) == len(jobs)
    for job in jobs:
        assert job.env_id in morbench.list_envs()
        build_config(job.method, job.overrides)  # raises ConfigError on an unknown or invalid field


# -- canonical uniqueness, repeated seeds, mixed sample counts, the terminal table, report safety ---------------
def test_uniqueness_counts_canonical_molecules_once():
    from morbench.scoring import canonical_uniqueness

    task = morbench.make("morbench/QM9-v0").unwrapped
    # "CCO" and "OCC" are both ethanol; the invalid sample is not counted
    assert canonical_uniqueness(task, ["CCO", "OCC", "CCN", "C1CC"], [True, True, True, False]) == pytest.approx(2 / 3)
    assert canonical_uniqueness(task, ["CCO"], [False]) == 0.0
    motifs = morbench.make(ENV).unwrapped  # a task whose canonical form is the string itself
    assert canonical_uniqueness(motifs, ["AB", "AB", "BA"], [True, True, True]) == pytest.approx(2 / 3)
    # the scorer's headline uniqueness (at the uniform preference) uses it
    sequences = ["CCO", "OCC", "CCN", "CCC"]
    evaluation = {
        "env": {"id": "morbench/QM9-v0", "version": 0},
        "method": "m",
        "seed": 0,
        "objective_names": list(task.objective_names),
        "preferences": [
            {"weights": w.tolist(), "sequences": sequences, "rewards": [[0.5, 0.5, 0.5]] * 4, "valid": [True] * 4}
            for w in task.preference_grid
        ],
    }
    assert score_evaluation(evaluation, task, domain=False)["uniqueness"] == pytest.approx(3 / 4)


def test_a_repeated_seed_is_refused(prior_run, tmp_path):
    shutil.copytree(prior_run, tmp_path / "runs" / "a")
    shutil.copytree(prior_run, tmp_path / "runs" / "b")  # the same seed-0 run twice: std 0.000 before
    with pytest.raises(InvalidRunError, match=r"seed 0 appears 2 times.*runs/a.*runs/b"):
        score_directory(tmp_path / "runs", plots=False)


def _variant(result, **changes):
    return {**result, **changes}


def test_mixed_sample_counts_are_flagged_and_intervals_are_student_t(prior_run):
    from morbench import metrics
    from morbench.scoring import aggregate, format_table, table_warnings

    base = score_run(prior_run)
    runs = [
        _variant(base, seed=0),
        _variant(base, seed=1, samples_per_preference=16, hypervolume=base["hypervolume"] + 0.01),
        _variant(base, method="other", seed=0, samples_per_preference=64),
    ]
    summary = aggregate(runs)
    entry = summary[f"{ENV}::prior"]
    assert entry["samples_per_preference"] == [16, 32] and "mixed samples per preference" in entry["warnings"][0]
    values = [base["hypervolume"], base["hypervolume"] + 0.01]
    assert entry["hypervolume"]["ci95"] == pytest.approx(list(metrics.t_interval(values)))
    warnings = table_warnings(summary)
    assert any("different samples per preference" in w and "other: 64" in w for w in warnings)
    table = format_table({"summary": summary})
    assert "hypervolume ±95%" in table and "WARNINGS" in table and "served utility" in table
    lines = table.splitlines()
    assert lines[0] == ENV and lines[1].split()[:3] == ["method", "seeds", "n/pref"]
    prior_row = next(line for line in lines if line.startswith("prior "))
    assert "16/32" in prior_row and f"{np.mean(values):.3f} ± " in prior_row


def test_score_command_prints_the_table(prior_run, tmp_path, capsys):
    from morbench.cli import main

    shutil.copytree(prior_run, tmp_path / "runs" / "prior")
    assert main(["score", str(tmp_path / "runs"), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "hypervolume ±95%" in out and "\nprior " in out and "metrics.json" in out


def test_new_keys_of_a_scored_run(prior_run):
    result = score_run(prior_run)
    for key in ("hypervolume_plugin", "served_utility", "expected_utility_plugin", "cardinality_plugin"):
        assert key in result
    assert result["samples_per_preference"] == 32
    assert result["cardinality"] <= result["cardinality_plugin"]
    assert "maximum_utility_loss_plugin" in result  # Motifs knows its true front


def test_report_escapes_method_names_and_ships_the_definitions(prior_run, tmp_path):
    from morbench.scoring import METRIC_DEFINITIONS, aggregate, report_markdown

    name = "<script>alert(1)</script>\n## owned | col"
    results = [_variant(score_run(prior_run), method=name)]
    report = report_markdown(aggregate(results), results, [], tmp_path)
    assert "<script>" not in report and "&lt;script&gt;" in report
    assert not any(line.startswith("## owned") for line in report.splitlines())
    table_row = next(line for line in report.splitlines() if "alert" in line)
    assert table_row.count(" | ") == table_row.replace("\\|", "").count(" | ")  # the name's "|" is escaped
    # a pip install has no docs/ folder: the definitions are in the report itself, docs/metrics.md has them all
    assert "## Metric definitions" in report and "(docs/metrics.md)" not in report
    docs = (Path(__file__).parents[1] / "docs" / "metrics.md").read_text()
    for key in {k for k in re.findall(r"`([a-z_0-9]+)`", METRIC_DEFINITIONS) if len(k) > 3}:
        assert f"`{key}`" in docs, key


def test_judge_gap_relative_to_the_prior(tmp_path):
    from morbench.scoring import add_judge_gap_vs_prior, prior_judge_gap

    env_id = "morbench/QM9-v0"
    run_dir = tmp_path / "prior"
    run_method("prior", env_id, run_dir, seed=0, eval_samples=8, progress=False)
    prior = score_run(run_dir, domain=False)
    task = morbench.make(env_id).unwrapped
    # the scorer's own prior sample reproduces the prior run's uniform-preference samples exactly
    assert prior_judge_gap(task, 0, 8) == pytest.approx(prior["judge_gap"], abs=1e-6)  # stored rewards: 6 decimals
    other = _variant(prior, method="tuned", judge_gap=prior["judge_gap"] + 0.05)
    results = [prior, other]
    add_judge_gap_vs_prior(results)
    assert prior["judge_gap_vs_prior"] == 0.0
    assert other["judge_gap_vs_prior"] == pytest.approx(0.05) and "prior run" in other["prior_judge_gap_source"]
    alone = _variant(other)
    add_judge_gap_vs_prior([alone])  # no prior run in the set: the scorer samples the prior
    assert alone["judge_gap_vs_prior"] == pytest.approx(0.05) and "sampled" in alone["prior_judge_gap_source"]


def test_a_collapsed_seed_counts_in_the_icv_over_seeds():
    """An ICV over seeds is averaged as its inverse (the CV): a seed collapsed onto one sequence (ICV +inf, or ~1e15
    by float rounding) counts as CV 0. Before, the mean of (2, 4, inf) dropped the inf seed (3.0 from two of three
    seeds) and the mean of (2, 4, 4.05e15) was 1.35e15."""
    from morbench.scoring import aggregate

    def run(seed: int, icv_samples: float) -> dict:
        return {"env": ENV, "method": "m", "seed": seed, "samples_per_preference": 8, "icv_samples": icv_samples}

    for collapsed in (float("inf"), 4.05e15):
        entry = aggregate([run(0, 2.0), run(1, 4.0), run(2, collapsed)])[f"{ENV}::m"]["icv_samples"]
        cv_mean = (0.5 + 0.25 + 1 / collapsed) / 3
        assert entry["n"] == 3 and entry["mean"] == pytest.approx(1 / cv_mean)  # 4.0: one seed in three collapsed
        assert entry["cv"]["mean"] == pytest.approx(cv_mean) and entry["std"] is None
        low, high = entry["ci95"]
        assert low == pytest.approx(1 / entry["cv"]["ci95"][1]) and high is None  # the CV interval reaches below 0
    entry = aggregate([run(0, 2.0), run(1, 2.5), run(2, float("nan"))])[f"{ENV}::m"]["icv_samples"]
    assert entry["n"] == 2 and entry["mean"] == pytest.approx(1 / 0.45)  # an undefined ICV (NaN) is left out
