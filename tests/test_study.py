"""morbench study: the committed definitions, the smoke scale end to end, resumability, time limits, and the
study-only evaluation temperature (recorded, and refused by submit and leaderboard validation)."""

from __future__ import annotations

import gzip
import itertools
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from morbench.baselines import build_config
from morbench.benchmark import ALL_METHODS, job_identity
from morbench.errors import ConfigError
from morbench.study import STUDIES, get_study, run_study, study_jobs

SMOKE = ("paper-qm9", "m-sweep", "frontier")


@pytest.fixture(scope="module")
def smoke_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The three studies at the smoke scale, run once (they share the runs they have in common)."""
    root = tmp_path_factory.mktemp("studies")
    for name in SMOKE:
        result = run_study(name, root / name, smoke=True, workers=1, threads=1, progress=False)
        failed = [o for o in result["outcomes"] if o["status"] == "failed"]
        assert not failed, failed
    return root


def _study_json(root: Path, name: str) -> dict:
    return json.loads((root / name / "study.json").read_text())


def _untimed(payload: dict) -> dict:
    """A study.json without the wall-clock seconds its runs took (everything else is reproducible)."""
    for record in payload["records"]:
        record["compute"].pop("wall_seconds", None)
        record["compute"].pop("evaluation_seconds", None)
    return payload


# -- definitions -------------------------------------------------------------------------------------------------
def test_paper_qm9_is_the_papers_scale_for_every_method_under_both_conventions():
    study = get_study("paper-qm9")
    assert study.env_id == "morbench/QM9-v1" and study.decodings == ("t0.7", "protocol")
    assert {(r.method, r.convention) for r in study.rows} == {
        (m, c) for m in ALL_METHODS for c in ("total", "per_expert")
    }
    for row in study.rows:
        assert row.seeds == (0, 1, 2, 3, 4) and row.eval_samples == 1024 and row.eval_temperatures == (0.7,)
        config = build_config(row.method, row.overrides)  # every override is a real, well-typed field
        if row.method in ("iterative_rs", "rewarded_soups", "morlhf"):
            ppo = config.ppo
            assert (ppo.batch_size, ppo.minibatch_size, ppo.ppo_epochs, ppo.kl_coef, ppo.temperature) == (
                128,
                32,
                4,
                0.05,
                0.7,
            )
            assert config.iterations == (100 if row.convention == "per_expert" else 1000)
        if row.convention == "per_expert":  # T worst-case iterations: the cap of 100 binds first
            assert row.sampled_tokens == 100 * 128 * 31


def test_m_sweep_and_frontier_definitions():
    sweep = get_study("m-sweep")
    ms = sorted(r.tags["m"] for r in sweep.rows if r.tags["group"] == "m-sweep")
    assert ms == [1, 2, 4, 8, 16, 32, 100]  # 100 = T: one round, Rewarded Soups by construction
    subsets = {
        build_config(r.method, r.overrides).objectives_per_round for r in sweep.rows if r.tags["group"] == "subsampling"
    }
    assert subsets == {1, 2}
    assert {r.method for r in sweep.rows if r.tags["group"] == "references"} == {"rewarded_soups", "morlhf"}
    assert len({r.sampled_tokens for r in sweep.rows}) == 1  # one fixed budget
    frontier = get_study("frontier")
    kls = {(r.method, r.tags["kl"]) for r in frontier.rows if r.tags["kl"] is not None}
    assert kls == {(m, k) for m in ("iterative_rs", "rewarded_soups", "morlhf") for k in (0.01, 0.05, 0.2)}
    for row in frontier.rows:
        if row.tags["kl"] is not None:
            assert build_config(row.method, row.overrides).ppo.kl_coef == row.tags["kl"]


@pytest.mark.parametrize("name", STUDIES)
def test_every_study_defines_buildable_unique_runs(name, tmp_path):
    study = get_study(name)
    jobs = study_jobs(study, tmp_path / name)
    assert len({(j.row, j.job.seed) for j in jobs}) == len(jobs)
    assert [j.job.seed for j in jobs] == sorted(j.job.seed for j in jobs)  # seed-major: chunks are whole seeds
    for job in jobs[: len(study.rows)]:
        job_identity(job.job)  # config, budget and env resolve
    if study.env_id != "morbench/QM9-v1":
        assert study.decodings == ("protocol",)  # the standard scale keeps the protocol's decoding


COMMITTED = sorted((Path(__file__).parents[1] / "results" / "studies").glob("*/study.json"))


@pytest.mark.parametrize("path", COMMITTED, ids=[p.parent.name for p in COMMITTED])
def test_every_committed_record_is_still_a_run_of_its_study(path):
    """A change to a study's settings (or to a config the suites share, e.g. QM9's Rewards-in-Context) changes the
    identities of its runs: the committed records would be orphaned and the study would re-run them (paper-qm9:
    about 60 core-hours). Changes that must keep results keep identities; this says which record broke."""
    from morbench.study import _committed_for, committed_records, read_study

    payload = read_study(path)
    jobs = study_jobs(get_study(path.parent.name), path.parent)
    hashes = {job_identity(job.job)["hash"]: job for job in jobs}
    orphans = [(r["row"], r["seed"]) for r in payload["records"] if r.get("identity") not in hashes]
    assert not orphans, f"{path}: committed records no study run has: {orphans[:5]}"
    if payload["complete"]:
        committed = committed_records(path.parent)
        assert all(_committed_for(job, committed) is not None for job in jobs)


def test_unknown_studies_are_refused():
    with pytest.raises(ConfigError, match="unknown study 'nope'"):
        get_study("nope")


# -- the smoke scale end to end ----------------------------------------------------------------------------------
def test_smoke_studies_complete_with_both_decodings(smoke_root):
    for name in SMOKE:
        payload = _study_json(smoke_root, name)
        assert payload["complete"] and payload["scale"] == "smoke"
        rows = {r["label"] for r in payload["rows"]}
        decodings = {(r["row"], r["decoding"]) for r in payload["records"]}
        assert decodings == {(row, d) for row in rows for d in ("t0.7", "protocol")}
        for record in payload["records"]:
            assert record["temperature"] == (0.7 if record["decoding"] == "t0.7" else 1.0)
            assert set(record["metrics"]) >= {"average_reward", "icv_samples", "kl_to_prior", "per_objective_mean"}
            assert record["per_preference"] and "sequences" not in json.dumps(record)  # compact: no samples
    sweep = _study_json(smoke_root, "m-sweep")
    protocol = {r["row"]: r for r in sweep["records"] if r["decoding"] == "protocol"}
    # m = T (one round) is Rewarded Soups: the same experts, so the same samples and metrics
    assert protocol["m=4"]["metrics"] == protocol["rewarded_soups/per_expert"]["metrics"]
    # M = 1 of 3 objectives per round spends about a third of the full rounds' tokens
    assert protocol["M=1,m=2"]["compute"]["sampled_tokens"] < 0.6 * protocol["m=2"]["compute"]["sampled_tokens"]


def test_every_record_names_the_machine_and_code_that_made_its_run(smoke_root):
    """The costs the findings state are wall-clock seconds: each record says on what they were measured."""
    import morbench
    from morbench.runs import hardware_info

    machine = hardware_info()
    for record in _study_json(smoke_root, "paper-qm9")["records"]:
        hardware = record["hardware"]
        assert hardware["cpu_count"] == machine["cpu_count"] and hardware["processor"] == machine["processor"]
        assert hardware["torch_threads"] == 1 and hardware["device"] == "cpu"
        assert hardware["morbench"] == morbench.__version__ and "commit" in hardware


def test_a_study_json_of_another_format_is_refused_with_a_command_that_exists(tmp_path, capsys):
    from morbench.cli import main
    from morbench.study import read_study

    path = tmp_path / "study.json"
    path.write_text(json.dumps({"format": 0, "records": []}))
    with pytest.raises(ConfigError, match="format 0 is not") as refused:
        read_study(path)
    command = str(refused.value).rsplit("`", 2)[1].replace("<name>", "paper-qm9").split()
    assert command[:2] == ["morbench", "study"]
    with pytest.raises(SystemExit) as help_exit:
        main([*command[1:], "--help"])
    assert help_exit.value.code == 0 and all(flag in capsys.readouterr().out for flag in command[3:])


def test_a_finished_study_is_skipped_and_its_results_are_reproduced_exactly(smoke_root):
    before = (smoke_root / "paper-qm9" / "study.json").read_bytes()
    result = run_study("paper-qm9", smoke_root / "paper-qm9", smoke=True, workers=1, threads=1, progress=False)
    assert {o["status"] for o in result["outcomes"]} == {"skipped (already complete)"}
    assert (smoke_root / "paper-qm9" / "study.json").read_bytes() == before


def test_max_hours_stops_new_runs_and_the_same_command_continues(tmp_path):
    result = run_study(
        "frontier", tmp_path / "frontier", smoke=True, workers=1, threads=1, progress=False, max_hours=1e-9
    )
    assert {o["status"] for o in result["outcomes"]} == {"not started (time limit)"}
    payload = result["study"]
    assert not payload["complete"] and payload["records"] == [] and payload["missing"] > 0


def _ran(job):
    return {"job": job.name, "status": "ok", "seconds": 0.0}


def test_a_run_that_would_end_after_the_time_limit_does_not_start_and_a_shorter_one_does():
    """A chunk must end near its limit: a run started late would be killed with the session and lose its work."""
    from types import SimpleNamespace

    from morbench.benchmark import run_jobs

    jobs = [SimpleNamespace(name="long", seconds=7200.0), SimpleNamespace(name="short", seconds=60.0)]
    outcomes = run_jobs(
        jobs, workers=1, progress=False, fn=_ran, deadline=time.monotonic() + 3600, expected=lambda j: j.seconds
    )
    assert outcomes[0]["status"].startswith("not started (estimated 2.00 h, more than the 1.00 h left")
    assert outcomes[0]["estimated_seconds"] == 7200.0
    assert outcomes[1]["status"] == "ok"
    unknown = run_jobs(jobs, workers=1, progress=False, fn=_ran, deadline=time.monotonic() + 3600)
    assert [o["status"] for o in unknown] == ["ok", "ok"]  # no estimate: only the deadline counts
    late = run_jobs(jobs, workers=1, progress=False, fn=_ran, deadline=time.monotonic() - 1, expected=lambda j: 0.0)
    assert [o["status"] for o in late] == ["not started (time limit)"] * 2


def test_a_log_file_gets_a_progress_line_only_when_the_runs_in_flight_change(capsys):
    """A study chunk run under nohup writes its bar into a file: a redraw a second was a new line every second."""
    import sys

    from tqdm import tqdm

    from morbench.benchmark import _show_in_flight

    bar = tqdm(total=2, desc="benchmark", unit="run", file=sys.stderr)  # captured: not a terminal
    for names in [["a"]] * 30 + [["a", "b"]] * 30 + [[]] * 5:  # the executor's loop asks once a second
        _show_in_flight(bar, names)
    bar.close()
    log = capsys.readouterr().err
    assert log.count("running: a]") == 1 and log.count("running: a, b]") == 1
    quiet = tqdm(total=2, disable=True)  # --quiet: nothing to show, and nothing to fail on
    _show_in_flight(quiet, ["a"])
    assert capsys.readouterr().err == ""


@pytest.fixture
def started(monkeypatch):
    """The study jobs that ``run_study`` starts, in order; each only pretends to run (``_ran``)."""
    import morbench.study as study_module

    jobs = []

    def pretend(job):
        jobs.append(job)
        return _ran(job)

    monkeypatch.setattr(study_module, "run_study_job", pretend)
    return jobs


def test_a_paper_scale_chunk_starts_its_longest_runs_first_and_none_that_would_overrun(tmp_path, capsys, started):
    from morbench.study import row_estimates

    result = run_study("paper-qm9", tmp_path / "paper-qm9", workers=1, threads=1, progress=False, max_hours=1.0)
    estimates = row_estimates(get_study("paper-qm9"))
    assert max(estimates, key=estimates.get) == "rewards_in_context/total"
    outcomes = result["outcomes"]
    assert outcomes[0]["job"].endswith("[rewards_in_context/total]")  # seed 0's longest run is considered first
    assert outcomes[0]["status"].startswith("not started (estimated")
    seeds = [job.job.seed for job in started]
    assert seeds == sorted(seeds) and len(set(seeds)) == 5
    for seed in set(seeds):
        row_hours = [estimates[job.row] for job in started if job.job.seed == seed]
        assert row_hours == sorted(row_hours, reverse=True) and max(row_hours) <= 3600
    refused = {o["job"].rsplit("[", 1)[1].rstrip("]") for o in outcomes if o["status"].startswith("not started")}
    assert refused == {label for label, seconds in estimates.items() if seconds > 3600}

    from morbench.cli import main

    assert (
        main(["study", "paper-qm9", "--out", str(tmp_path / "cli"), "--max-hours", "1", "--quiet", "--workers", "1"])
        == 0
    )
    longest = max(estimates.values()) / 3600
    assert f"start only in a chunk of at least {longest:.2f} h" in capsys.readouterr().out


def test_every_study_run_uses_one_torch_thread_whatever_the_cores_and_workers(tmp_path, monkeypatch):
    """The thread count changes the last bits of CPU gradients, and a study's records must reproduce across chunks
    and machines: a `--workers 1` chunk on 2 cores gave its runs 2 threads (and 8 on a 16-core machine's default)."""
    import morbench.study as study_module

    started = []

    def pretend(jobs, executor, workers, *args, **kwargs):
        started.extend(jobs)
        return [_ran(job) for job in jobs]

    monkeypatch.setattr(study_module, "run_jobs", pretend)
    monkeypatch.setattr(study_module.os, "cpu_count", lambda: 16)
    for workers in (1, None):
        run_study("paper-qm9", tmp_path / f"w{workers}", workers=workers, progress=False)
    assert started and {job.job.threads for job in started} == {1}


def test_a_resumed_run_is_charged_what_its_checkpoint_has_not_spent(tmp_path):
    from morbench.baselines.checkpoint import save_checkpoint
    from morbench.study import RESUMED_MIN_SHARE, seconds_left

    run = tmp_path / "run"
    assert seconds_left(run, 9864.0) == 9864.0  # nothing done yet
    save_checkpoint(run / "checkpoint", {"state": {}, "ledger": {"wall_seconds": 7200.0, "sampled_tokens": 5}})
    assert seconds_left(run, 9864.0) == pytest.approx(2664.0)
    assert seconds_left(run, 7300.0) == pytest.approx(RESUMED_MIN_SHARE * 7300.0)  # overran: still its evaluations
    state = run / "checkpoint" / "state.json"
    state.write_text(state.read_text().replace("7200.0", "1.0"))  # edited: the run may start over
    assert seconds_left(run, 9864.0) == 9864.0
    (run / "run.json").write_text("{}")  # finished here: only its leftovers
    assert seconds_left(run, 9864.0) == 0.0


def test_a_checkpointed_run_longer_than_the_chunk_resumes_when_what_it_has_left_fits(tmp_path, started):
    """paper-qm9's Rewards-in-Context `total` run (estimated 2.74 h) was charged its whole estimate when resumed,
    so a chunk of `--max-hours 2` could never finish it, however far its checkpoint had got."""
    from morbench.baselines.checkpoint import save_checkpoint
    from morbench.study import row_estimates

    out = tmp_path / "paper-qm9"
    estimates = row_estimates(get_study("paper-qm9"))
    assert estimates["rewards_in_context/total"] > 2 * 3600
    ric = next(
        j for j in study_jobs(get_study("paper-qm9"), out) if j.row == "rewards_in_context/total" and j.job.seed == 0
    )
    spent = estimates["rewards_in_context/total"] - 1800.0  # half an hour left
    save_checkpoint(Path(ric.job.out) / "checkpoint", {"state": {}, "ledger": {"wall_seconds": spent}})
    result = run_study("paper-qm9", out, workers=1, threads=1, progress=False, max_hours=2.0)
    assert ric.job.out in {job.job.out for job in started}
    assert result["outcomes"][0]["job"] == ric.name  # the longest of seed 0, and it fits now
    refused = [o for o in result["outcomes"] if o["job"] == ric.name.replace("seed=0", "seed=1")]
    assert refused and refused[0]["status"].startswith("not started (estimated 2.7")  # seed 1 has no checkpoint


def test_the_runs_of_paper_studies_bank_a_leaderboard_part_that_is_verified_when_made(smoke_root, tmp_path):
    """A paper study's runs lose their weights with their checkout: each gets a part, verified right away
    (merging verified parts into a ranked entry: tests/leaderboard/test_parts.py)."""
    import dataclasses

    from morbench.errors import SubmissionError
    from morbench.study import bank_study_part, run_study_job

    ledger = tmp_path / "verified.json"
    paper = study_jobs(get_study("paper-qm9"), tmp_path / "paper-qm9", ledger=ledger)
    trained = [j for j in paper if j.job.method != "prior"]  # the prior's entry is the board's prior entry
    assert all(j.part.endswith(f"seed_{j.job.seed}.json.gz") and j.ledger == str(ledger) for j in trained)
    assert len({j.part for j in trained}) == len({j.job.out for j in trained})  # one part per run
    assert not any(j.part for j in paper if j.job.method == "prior")
    assert not any(j.part for j in study_jobs(get_study("m-sweep"), tmp_path / "m-sweep", ledger=ledger))
    assert not any(j.part for j in study_jobs(get_study("paper-qm9"), tmp_path / "paper-qm9"))  # no ledger
    smoke = study_jobs(get_study("paper-qm9", smoke=True), smoke_root / "paper-qm9", ledger=ledger)
    assert not any(j.part for j in smoke)  # the smoke scale's runs are no leaderboard entries
    # a run that cannot be an entry (8 samples per preference) leaves no part and fails its study job clearly
    job = dataclasses.replace(smoke[0], part=str(tmp_path / "parts" / "seed_0.json.gz"), ledger=str(ledger))
    with pytest.raises(SubmissionError, match=r"did not verify: .*8 samples per preference"):
        bank_study_part(job)
    assert not Path(job.part).exists()
    outcome = run_study_job(job)
    assert outcome["status"] == "failed" and outcome["error"].startswith("verifying its leaderboard part: ")


def test_reevaluation_at_the_protocol_temperature_reproduces_the_runs_evaluation(smoke_root, tmp_path):
    """The rebuilt policies (interpolated experts, MORLHF's nearest preference, the prior) are the runs' own."""
    from morbench.runs import read_evaluation
    from morbench.study import evaluate_at_temperature

    jobs = study_jobs(get_study("paper-qm9", smoke=True), smoke_root / "paper-qm9", threads=1)
    for job in jobs:
        if job.job.convention != "per_expert":
            continue
        evaluate_at_temperature(job.job, 1.0, tmp_path / job.job.method)
        again = json.loads(gzip.decompress((tmp_path / job.job.method / "evaluation.json.gz").read_bytes()))
        original = read_evaluation(job.job.out, verify=False)
        assert "decoding_override" not in again
        assert [e["sequences"] for e in again["preferences"]] == [e["sequences"] for e in original["preferences"]]


def test_the_override_is_recorded_and_differs_from_the_protocol(smoke_root):
    from morbench.runs import read_evaluation

    job = next(
        j for j in study_jobs(get_study("paper-qm9", smoke=True), smoke_root / "paper-qm9") if j.job.method == "prior"
    )
    tempered = json.loads(gzip.decompress((Path(job.evaluations[0]) / "evaluation.json.gz").read_bytes()))
    assert tempered["decoding_override"] == {"temperature": 0.7, "protocol_temperature": 1.0}
    assert tempered["protocol"]["temperature"] == 0.7
    original = read_evaluation(job.job.out, verify=False)
    assert original["protocol"]["temperature"] == 1.0 and "decoding_override" not in original
    assert [e["sequences"] for e in tempered["preferences"]] != [e["sequences"] for e in original["preferences"]]


def test_submit_refuses_a_run_evaluated_with_a_decoding_override(smoke_root, tmp_path):
    from morbench.errors import SubmissionError
    from morbench.leaderboard.submit import make_submission

    job = next(
        j for j in study_jobs(get_study("paper-qm9", smoke=True), smoke_root / "paper-qm9") if j.job.method == "prior"
    )
    run = tmp_path / "run"
    shutil.copytree(job.job.out, run)
    shutil.copy(Path(job.evaluations[0]) / "evaluation.json.gz", run / "evaluation.json.gz")
    with pytest.raises(SubmissionError, match="decoding override"):
        make_submission([run], "tempered prior")


def test_leaderboard_validation_refuses_a_submission_decoded_off_protocol(tmp_path):
    import morbench
    from morbench.errors import SubmissionError
    from morbench.leaderboard.submit import make_submission
    from morbench.leaderboard.validate import validate_submission
    from morbench.runs import find_runs

    def letters(preference, num_samples, seed):
        rng = np.random.default_rng(seed)
        return ["".join(rng.choice(list("ABCDEFGHIJKL"), size=3)) for _ in range(num_samples)]

    morbench.evaluate(
        letters,
        "morbench/Motifs-2obj-v0",
        seeds=[0],
        out=tmp_path,
        method="letters",
        samples_per_preference=128,
        progress=False,
    )
    submission = make_submission(find_runs(tmp_path), "Letters")
    validate_submission(submission, "letters")  # the protocol's decoding passes
    submission["protocol"]["temperature"] = 0.7  # a study-only evaluation relabelled as a submission
    with pytest.raises(SubmissionError, match=r"protocol\.temperature 0\.7"):
        validate_submission(submission, "letters")


def test_a_callable_policy_has_no_temperature_to_override():
    from morbench.evaluation import CallablePolicy, with_temperature

    with pytest.raises(ConfigError, match="temperature"):
        with_temperature(CallablePolicy(lambda preference, n, seed: ["A"] * n), 0.7)


def test_the_study_command_reports_a_smoke_study_as_a_test_not_a_finding(smoke_root, capsys):
    from morbench.cli import main

    assert main(["study", "m-sweep", "--smoke", "--report", "--out", str(smoke_root / "m-sweep")]) == 0
    page = (smoke_root / "m-sweep" / "findings.md").read_text()
    assert "Smoke scale: a test of the pipeline, not a finding" in page
    assert (
        "an intermediate m is optimal" in page and (smoke_root / "m-sweep" / "plots" / "m-sweep-m-sweep.png").is_file()
    )
    assert main(["study", "nope", "--smoke"]) == 2
    assert "unknown study" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("method", "overrides"),
    [
        ("best_of_n", {"n": 2, "pilot_samples": 16}),
        (
            "rewards_in_context",
            {
                "offline_samples": 32,
                "online_samples": 16,
                "online_iterations": 1,
                "offline_epochs": 1,
                "batch_size": 16,
            },
        ),
    ],
)
def test_best_of_n_and_rewards_in_context_are_rebuilt_exactly(method, overrides, tmp_path):
    """The methods the smoke scale leaves out: best-of-N re-selects with a fresh budget context, RiC reloads."""
    from morbench.benchmark import Job, run_job
    from morbench.runs import read_evaluation
    from morbench.study import evaluate_at_temperature

    job = Job("morbench/Motifs-v0", method, 0, str(tmp_path / "run"), overrides, 4000, 8, {}, 1, "total", "cpu")
    assert run_job(job)["status"] == "ok"
    evaluate_at_temperature(job, 1.0, tmp_path / "again")
    again = json.loads(gzip.decompress((tmp_path / "again" / "evaluation.json.gz").read_bytes()))
    original = read_evaluation(job.out, verify=False)
    assert [e["sequences"] for e in again["preferences"]] == [e["sequences"] for e in original["preferences"]]


def test_the_documented_costs_are_the_estimates():
    """docs/studies.md's cost table and the README's study costs are what morbench.study.estimate gives."""
    from morbench.study import estimate

    lines = (Path(__file__).resolve().parents[1] / "docs" / "studies.md").read_text().splitlines()
    header = lines.index(
        "| study | core-hours | hours on 2 cores | hours on 16 cores (Ray) | longest run (hours) | hours on 1 GPU "
        "(estimated) |"
    )
    table = list(itertools.takewhile(lambda line: line.startswith("|"), lines[header + 2 :]))
    expected = []
    for name in STUDIES:
        e = estimate(name)
        expected.append(
            f"| `{name}` | {e['core_hours']:.1f} | {e['hours_2_cores']:.1f} | {e['hours_16_cores']:.1f} | "
            f"{e['longest_run_hours']:.2f} | {e['hours_1_gpu']:.1f} |"
        )
    assert table == expected  # the cost table, row for row (not a cost row pasted into another table)
    assert not [line for line in lines[:header] if line.startswith("| `") and line.count("|") == 7]  # nor elsewhere
    readme = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text().split())  # lines unwrapped
    for name in ("paper-qm9", "m-sweep", "frontier"):
        e = estimate(name)
        said = (
            f"`{name}` {e['hours_2_cores']:.1f} h on 2 cores, {e['hours_16_cores']:.1f} h on 16 "
            f"(`--executor ray`), about {e['hours_1_gpu']:.1f} h on one GPU"
        )
        assert said in readme, said


def test_the_remaining_estimate_counts_each_unfinished_run_once():
    from morbench.study import estimate, remaining_core_hours

    for name in SMOKE:
        rows = [row.to_dict() for row in get_study(name).rows]
        payload = {"study": name, "rows": rows, "records": []}
        assert remaining_core_hours(payload) == pytest.approx(estimate(name)["core_hours"])  # shared runs once
        seeds = sorted({seed for row in rows for seed in row["seeds"]})
        payload["records"] = [
            {"row": row["label"], "seed": seeds[0], "decoding": decoding}
            for row in rows
            for decoding in ("protocol", "t0.7")
        ]
        left = estimate(name)["core_hours"] * (len(seeds) - 1) / len(seeds)
        assert remaining_core_hours(payload) == pytest.approx(left)
        payload["records"] = [r for r in payload["records"] if r["decoding"] == "t0.7"]  # a run ends with its protocol
        assert remaining_core_hours(payload) == pytest.approx(estimate(name)["core_hours"])


def _without_study_files(root: Path, collect) -> bytes:
    """Collect ``frontier`` with no study.json in the pool (committed records are kept otherwise, never re-scored);
    the files are put back afterwards. Returns the study.json that collecting wrote."""
    saved = {path: path.read_bytes() for path in root.glob("*/study.json")}
    try:
        for path in saved:
            path.unlink()
        collect()
        return (root / "frontier" / "study.json").read_bytes()
    finally:
        for path, data in saved.items():
            path.write_bytes(data)


def test_collecting_again_without_the_score_cache_gives_the_same_study_json(smoke_root):
    from morbench.study import collect_study

    before = (smoke_root / "frontier" / "study.json").read_bytes()
    shutil.rmtree(smoke_root / "compact")
    collect = lambda: collect_study("frontier", smoke_root / "frontier", smoke=True)  # noqa: E731
    assert _without_study_files(smoke_root, collect) == before  # every evaluation re-scored
    cache = Path(study_jobs(get_study("frontier", smoke=True), smoke_root / "frontier")[0].compact) / "protocol.json"
    stale = json.loads(cache.read_text())
    stale["evaluation_sha256"] = "0" * 64
    stale["record"]["metrics"]["average_reward"] = 99.0  # a cache of another evaluation file is never used
    cache.write_text(json.dumps(stale))
    assert _without_study_files(smoke_root, collect) == before
    stale = json.loads(cache.read_text())
    stale["scorer"] = "0" * 64  # nor one scored by other code (icv_samples was 4.05e15 there, now inf)
    stale["record"]["metrics"]["average_reward"] = 99.0
    cache.write_text(json.dumps(stale))
    assert _without_study_files(smoke_root, collect) == before


def test_committed_records_are_final_even_when_the_run_is_here(smoke_root, tmp_path):
    """A run re-made for its part (or any run here) never rewrites the records a study.json already holds: the
    findings were made from them (it used to re-score the run here and replace them)."""
    from morbench.study import collect_study

    pool = tmp_path / "studies"
    shutil.copytree(smoke_root, pool)
    path = pool / "paper-qm9" / "study.json"
    payload = json.loads(path.read_text())
    record = payload["records"][0]
    record["compute"]["wall_seconds"] = 12345.0  # the first measurement of the run's cost...
    record["metrics"]["average_reward"] = 0.123456  # ...and a number to tell the kept record apart
    path.write_text(json.dumps(payload))
    collected = collect_study("paper-qm9", pool / "paper-qm9", smoke=True)
    kept = [r for r in collected["records"] if r["identity"] == record["identity"] and r["decoding"] == "protocol"]
    assert kept and kept[0]["compute"]["wall_seconds"] == 12345.0 and kept[0]["metrics"]["average_reward"] == 0.123456


def test_a_rerun_must_reproduce_its_committed_records_before_its_part_is_banked(smoke_root, tmp_path):
    """``--bank-parts`` re-makes a run finished in another checkout for its leaderboard part: the part must be of
    the run the study reports, so the re-run's records must equal the committed ones (seconds and machine aside)."""
    import copy
    import dataclasses

    from morbench.study import _committed_for, check_reproduced, committed_records, run_study_job

    jobs = study_jobs(get_study("paper-qm9", smoke=True), smoke_root / "paper-qm9", threads=1)
    job = next(j for j in jobs if j.job.method == "rewarded_soups")
    committed = _committed_for(job, committed_records(smoke_root / "paper-qm9"))
    assert committed is not None and [r["decoding"] for r in committed] == ["protocol", "t0.7"]
    timed = copy.deepcopy(committed)
    timed[0]["compute"]["wall_seconds"] += 100.0  # another session's seconds and machine are no difference
    timed[1]["hardware"] = {"processor": "elsewhere"}
    outcome = run_study_job(dataclasses.replace(job, committed=tuple(timed)))
    assert outcome["status"] != "failed", outcome.get("error")

    changed = copy.deepcopy(committed)
    changed[1]["per_preference"][2]["mean"][0] += 1e-6
    part = tmp_path / "parts" / "seed_0.json.gz"
    rerun = dataclasses.replace(job, committed=tuple(changed), part=str(part), ledger=str(tmp_path / "ledger.json"))
    outcome = run_study_job(rerun)
    assert outcome["status"] == "failed" and not part.exists()  # checked before the part is made
    assert outcome["error"].startswith("reproducing its committed records: the re-run does not reproduce")
    assert "t0.7 decoding" in outcome["error"] and "per_preference.2.mean.0: " in outcome["error"]
    with pytest.raises(ConfigError, match=r"no protocol record"):
        check_reproduced([committed[1]], committed)
    with pytest.raises(ConfigError, match=r"metrics\.validity: absent vs"):
        dropped = copy.deepcopy(committed[0])
        del dropped["metrics"]["validity"]
        check_reproduced([dropped], committed[:1])
    # a committed record written before records carried cv_samples: nothing to compare that metric with; the rest is
    older = copy.deepcopy(committed[0])
    del older["metrics"]["cv_samples"]
    check_reproduced([committed[0]], [older])
    older["metrics"]["icv_samples"] = 4.05e15  # the old rounding-level ICV of a collapsed policy is a difference
    with pytest.raises(ConfigError, match=r"metrics\.icv_samples: "):
        check_reproduced([committed[0]], [older])


def test_a_record_that_does_not_reproduce_names_the_cpus_of_both_runs():
    """A CPU run is bit-exact on one CPU model only: when a re-run misses its committed record, the error says which
    CPUs made each (or that the committed record does not name its CPU), so a machine change is not mistaken for a
    change of code."""
    from morbench.study import check_reproduced

    intel = {"cpu": "Intel(R) Xeon(R) Processor", "cpu_capability": "AVX512"}
    amd = {"cpu": "AMD EPYC 7B13", "cpu_capability": "AVX2"}
    record = {"decoding": "protocol", "metrics": {"average_reward": 0.5}, "compute": {"gradient_steps": 10}}
    missed = {**record, "compute": {"gradient_steps": 11}}
    cases = [
        ({**intel}, {**amd}, "the committed run was made on AMD EPYC 7B13 (AVX2 kernels), the re-run on Intel"),
        ({**intel}, {"processor": "x86_64"}, "the committed record does not name its CPU model"),
        ({**intel, "trained_on": [amd, intel]}, {**amd}, "the re-run was resumed across CPUs (AMD EPYC 7B13 (AVX2"),
    ]
    for here, there, said in cases:
        with pytest.raises(ConfigError, match=r"gradient_steps: 11 vs 10") as caught:
            check_reproduced([{**missed, "hardware": here}], [{**record, "hardware": there}])
        assert said in str(caught.value) and "bit-exact on one CPU model" in str(caught.value), str(caught.value)
    with pytest.raises(ConfigError) as caught:  # the same CPU: nothing to say of machines
        check_reproduced([{**missed, "hardware": intel}], [{**record, "hardware": intel}])
    assert "CPU" not in str(caught.value)
    check_reproduced([{**record, "hardware": intel}], [{**record, "hardware": amd}])  # the CPU itself is no difference


def test_a_rerun_that_cannot_reproduce_on_this_cpu_fails_at_once(smoke_root, tmp_path):
    """A --bank-parts re-run whose committed record names another CPU, or whose checkpoint was made on another one,
    would train for hours and then miss its record (paper-qm9's RiC total seed 0: 2.9 h on an AMD EPYC, resumed on
    an Intel Xeon, 22,530 gradient steps against 23,852): it fails before training, saying why and what to do."""
    import copy
    import dataclasses

    from morbench.baselines.checkpoint import save_checkpoint
    from morbench.runs import cpu_kernels
    from morbench.study import _committed_for, committed_records, run_study_job

    jobs = study_jobs(get_study("paper-qm9", smoke=True), smoke_root / "paper-qm9", threads=1)
    job = next(j for j in jobs if j.job.method == "rewarded_soups")
    committed = _committed_for(job, committed_records(smoke_root / "paper-qm9"))
    elsewhere = {"cpu": "Elsewhere 9000", "cpu_capability": "AVX2"}
    here = cpu_kernels()

    def rerun(name, hardware=None, checkpoint=None):
        records = copy.deepcopy(committed)
        for record in records:
            record["hardware"] = {**record.get("hardware", {}), **(hardware or {})}
        out = tmp_path / name
        if checkpoint is not None:
            save_checkpoint(out / "checkpoint", {"trained_on": checkpoint})
        return run_study_job(
            dataclasses.replace(job, job=dataclasses.replace(job.job, out=str(out)), committed=records)
        )

    for outcome, said in [
        (rerun("record", elsewhere), "its committed run was made on Elsewhere 9000 (AVX2 kernels), this machine is"),
        (rerun("resumed", {**here, "trained_on": [elsewhere, here]}), "resumed across CPUs (Elsewhere 9000"),
        (rerun("checkpoint", here, [here, elsewhere]), "was made on Elsewhere 9000 (AVX2 kernels)"),
    ]:
        assert outcome["status"] == "failed" and outcome["seconds"] == 0.0, outcome
        assert outcome["error"].startswith("reproducing its committed records: ") and said in outcome["error"]
    assert not (tmp_path / "record").exists() and not (tmp_path / "resumed").exists()
    assert "delete the checkpoint" in rerun("checkpoint-2", None, [elsewhere])["error"]


def test_bank_parts_reruns_the_committed_runs_without_a_verified_part_and_only_those(tmp_path, monkeypatch, started):
    """On the committed paper-qm9 study.json (runs stubbed): without --bank-parts a run finished elsewhere is kept;
    with it, each one whose part is not verified re-runs with its committed records to reproduce."""
    import morbench.study as study_module
    from morbench.study import committed_records

    out = tmp_path / "paper-qm9"
    out.mkdir()
    payload = json.loads((Path(__file__).parents[1] / "results" / "studies" / "paper-qm9" / "study.json").read_text())
    # one run not finished yet (the committed study is complete): it is the one a chunk without --bank-parts runs
    payload["records"] = [r for r in payload["records"] if (r["row"], r["seed"]) != ("iterative_rs/total", 4)]
    (out / "study.json").write_text(json.dumps(payload))
    identities = set(committed_records(out))
    ledger = tmp_path / "verified.json"
    run_study("paper-qm9", out, workers=1, threads=1, progress=False, ledger=ledger)
    assert [j.row for j in started] == ["iterative_rs/total"] and started[0].job.seed == 4 and not started[0].committed

    started.clear()
    monkeypatch.setattr(study_module, "_part_is_verified", lambda job: job.job.seed == 1)  # seed 1's are banked
    result = run_study("paper-qm9", out, workers=1, threads=1, progress=False, ledger=ledger, bank_parts=True)
    reruns = {j.job.out: j for j in started if j.committed}
    finished = [j for j in study_jobs(get_study("paper-qm9"), out) if job_identity(j.job)["hash"] in identities]
    expected = {j.job.out for j in finished if j.job.method != "prior" and j.job.seed != 1}
    assert expected and set(reruns) == expected
    for job in reruns.values():
        assert [r["identity"] for r in job.committed] == [job_identity(job.job)["hash"]] * 2
        assert [r["decoding"] for r in job.committed] == ["protocol", "t0.7"]
    kept = {o["job"] for o in result["outcomes"] if o["status"].startswith("kept")}
    assert kept == {j.name for j in finished if j.job.out not in expected}
    with pytest.raises(ConfigError, match="makes no leaderboard parts"):
        run_study("m-sweep", tmp_path / "m-sweep", workers=1, progress=False, ledger=ledger, bank_parts=True)

    from morbench.cli import main

    for nothing_runs in ("--report", "--submit"):
        assert main(["study", "paper-qm9", "--out", str(out), "--bank-parts", nothing_runs]) == 2


def test_a_fresh_clone_keeps_the_committed_records_and_runs_only_the_rest(smoke_root, tmp_path):
    """A checkout has the committed study.json files, none of the runs: collecting there must not drop the records
    (it wrote an empty study.json before), and a chunk run there runs only what no committed file holds."""
    from morbench.study import collect_study

    fresh = tmp_path / "studies"
    (fresh / "paper-qm9").mkdir(parents=True)
    committed = (smoke_root / "paper-qm9" / "study.json").read_bytes()
    (fresh / "paper-qm9" / "study.json").write_bytes(committed)
    payload = collect_study("paper-qm9", fresh / "paper-qm9", smoke=True)
    assert payload["complete"] and (fresh / "paper-qm9" / "study.json").read_bytes() == committed
    assert all(isinstance(r["identity"], str) and len(r["identity"]) == 16 for r in payload["records"])

    # m-sweep shares m = 4, RS and MORLHF with paper-qm9: those are kept, the others run, and the results equal
    # the study run in one checkout
    result = run_study("m-sweep", fresh / "m-sweep", smoke=True, workers=1, threads=1, progress=False)
    statuses = {o["job"]: o["status"] for o in result["outcomes"]}
    kept = {job for job, status in statuses.items() if status.startswith("kept")}
    assert kept and {statuses[job] for job in set(statuses) - kept} == {"ok"}
    shared = {j.job.out for j in study_jobs(get_study("paper-qm9", smoke=True), fresh / "paper-qm9")}
    sweep = study_jobs(get_study("m-sweep", smoke=True), fresh / "m-sweep")
    assert kept == {j.name for j in sweep if j.job.out in shared}
    assert _untimed(_study_json(fresh, "m-sweep")) == _untimed(_study_json(smoke_root, "m-sweep"))
    assert not (fresh / "runs" / "morbench_Motifs-v0" / "rewarded_soups").exists()  # kept, never re-run


def test_best_of_n_affordability_does_not_hinge_on_rounding_the_budget():
    """CNS's ``total`` budget buys exactly 1.2 candidates per evaluation sample (3 x 64 x 64 = 1.2 x 10 x 1,024)
    whatever the measured mean length: best-of-N would be the prior there, so it is left out for every length
    (it used to flip with the rounding of the budget: in at 37.1 tokens, out at 36.9)."""
    import dataclasses

    from morbench.study import _standard

    for mean in (36.9, 37.0, 37.1, 37.3, 51.0):
        scale = _standard("morbench/CNS-v1", 100, mean, 3)
        assert not scale.affords_best_of_n("total")
        assert dataclasses.replace(scale, iterations=65).affords_best_of_n("total")
