"""Validation of bad and hostile submissions: each is rejected with a message naming the file and the problem."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from morbench.cli import main
from morbench.errors import SubmissionError
from morbench.leaderboard import schema
from morbench.leaderboard.schema import dumps_submission, env_stem, read_submission
from morbench.leaderboard.validate import (
    MIN_RANKED_SEEDS,
    REWARD_TOLERANCE,
    TaskCache,
    validate_files,
    validate_submission,
)

from .conftest import ENV_ID, write_raw, write_submission


def rejected(submission: dict[str, Any], tmp_path: Path, plain: bool = False) -> str:
    """Write, validate, and return the single error message (asserting it names the file)."""
    path = write_submission(tmp_path, submission, plain=plain)
    report = validate_files([path], root=tmp_path)
    assert not report.valid and len(report.errors) == 1, report.errors
    assert str(path) in report.errors[0]
    return report.errors[0]


def file_error(path: Path, root: Path | None = None) -> str:
    report = validate_files([path], root=root)
    assert not report.valid and len(report.errors) == 1, report.errors
    assert str(path) in report.errors[0]
    return report.errors[0]


def test_valid_submission_passes_but_samples_alone_cannot_rank(base_file: Path) -> None:
    report = validate_files([base_file])
    assert report.ok, report.errors
    (item,) = report.valid
    assert item.kind == "samples" and item.seeds == [0, 1, 2] and item.samples_per_preference == 128
    assert not item.ranked and item.shape_blockers() == [
        "samples only",
        f"fewer than {MIN_RANKED_SEEDS} seeds (3)",
        "not at the protocol's sample count (128 of 512 per preference)",
    ]
    # the board scores the recomputed rewards, one evaluation per seed, in grid order
    assert [e["seed"] for e in item.evaluations] == [0, 1, 2]
    assert [p["weights"] for p in item.evaluations[0]["preferences"]] == item.task.preference_grid.tolist()


def test_plain_json_is_accepted(base: dict[str, Any], tmp_path: Path) -> None:
    path = write_submission(tmp_path, base, plain=True)
    assert path.name.endswith(".json")
    assert validate_files([path], root=tmp_path).ok


def test_malformed_json(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "bad.json", '{"schema_version": 1, "name": ')
    assert "malformed JSON" in file_error(path)


def test_truncated_gzip(base_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "cut.json.gz"
    path.write_bytes(base_file.read_bytes()[:500])
    assert "not a valid gzip file" in file_error(path)


def test_wrong_suffix(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "notes.txt", "{}")
    assert "must end in .json.gz or .json" in file_error(path)


def test_duplicate_keys(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "dup.json", '{"schema_version": 1, "schema_version": 1}')
    assert "duplicate key 'schema_version'" in file_error(path)


def test_top_level_not_an_object(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "list.json", "[1, 2]")
    assert "top level must be a JSON object" in file_error(path)


def test_wrong_schema_version(base: dict[str, Any], tmp_path: Path) -> None:
    base["schema_version"] = 3
    assert "schema_version 3 is not supported" in rejected(base, tmp_path)
    base["schema_version"] = 2
    del base["provenance"]
    assert "'provenance' is a required property" in rejected(base, tmp_path)


def test_schema_violation_names_the_field(base: dict[str, Any], tmp_path: Path) -> None:
    del base["seeds"][1]["compute"]["oracle_calls"]
    base["extra"] = True
    message = rejected(base, tmp_path)
    assert "does not match the submission schema" in message
    assert "$.seeds[1].compute" in message and "oracle_calls" in message
    assert "Additional properties" in message


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinite_rewards(base: dict[str, Any], tmp_path: Path, literal: str) -> None:
    text = json.dumps(base)
    first_row = json.dumps(base["seeds"][0]["preferences"][0]["rewards"][0])
    text = text.replace(first_row, "[" + literal + first_row[first_row.index(",") :], 1)
    assert literal in text
    path = write_raw(tmp_path / "nan.json", text)
    message = file_error(path)
    assert literal in message and "not allowed" in message


def test_overflowing_number_is_not_finite(base: dict[str, Any], tmp_path: Path) -> None:
    text = json.dumps(base)
    row = json.dumps(base["seeds"][0]["preferences"][0]["rewards"][3])
    text = text.replace(row, "[1e400" + row[row.index(",") :], 1)
    path = write_raw(tmp_path / "overflow.json", text)
    assert "is not a finite number" in file_error(path)


def test_string_in_a_reward_row(base: dict[str, Any], tmp_path: Path) -> None:
    base["seeds"][2]["preferences"][1]["rewards"][77] = [0.5, "0.5"]
    message = rejected(base, tmp_path)
    assert "$.seeds[2].preferences[1].rewards[77]" in message


def test_unknown_env(base: dict[str, Any], tmp_path: Path) -> None:
    base["env"]["id"] = "morbench/Nope-v0"
    message = rejected(base, tmp_path)
    assert "morbench/Nope-v0" in message and "not available here" in message


def test_unknown_env_version(base: dict[str, Any], tmp_path: Path) -> None:
    base["env"]["version"] = 7
    assert "version 7 does not match the registered version 0" in rejected(base, tmp_path)


def test_env_kwargs_must_be_the_registered_task(base: dict[str, Any], tmp_path: Path) -> None:
    base["env"]["kwargs"] = {"max_length": 64}
    assert "the board ranks the registered task only" in rejected(base, tmp_path)


def test_wrong_number_of_objectives(base: dict[str, Any], tmp_path: Path) -> None:
    base["objective_names"] = ["motif_1", "motif_2", "motif_3"]
    assert "3 objectives submitted, the task has 2" in rejected(base, tmp_path)


def test_reward_rows_with_the_wrong_width(base: dict[str, Any], tmp_path: Path) -> None:
    base["seeds"][0]["preferences"][2]["rewards"][5] = [0.25, 0.25, 0.25]
    assert "wrong number of objectives" in rejected(base, tmp_path)


def test_preference_not_on_the_grid(base: dict[str, Any], tmp_path: Path) -> None:
    base["seeds"][1]["preferences"][1]["weights"] = [0.3, 0.7]
    assert "[0.3, 0.7] are not on the task's preference grid" in rejected(base, tmp_path)


def test_missing_and_repeated_grid_points(base: dict[str, Any], tmp_path: Path) -> None:
    base["seeds"][0]["preferences"][1]["weights"] = base["seeds"][0]["preferences"][0]["weights"]
    assert "is submitted twice" in rejected(base, tmp_path)
    del base["seeds"][0]["preferences"][1]
    assert "of the task's grid are missing" in rejected(base, tmp_path)


def test_claimed_rewards_that_do_not_match_rescoring(base: dict[str, Any], tmp_path: Path) -> None:
    entry = base["seeds"][1]["preferences"][3]
    entry["rewards"][10] = [1.0, 1.0]
    entry["rewards"][11] = [entry["rewards"][11][0] + 10 * REWARD_TOLERANCE, entry["rewards"][11][1]]
    entry["rewards"][12] = [entry["rewards"][12][0] + REWARD_TOLERANCE / 2, entry["rewards"][12][1]]  # within
    message = rejected(base, tmp_path)
    assert "2 sample(s) do not match re-scoring" in message
    weights = entry["weights"]
    for index in (10, 11):
        assert f"seed=1 preference={weights} index={index} sequence={entry['sequences'][index]!r}" in message
    assert "claimed [1, 1]" in message and "recomputed" in message
    assert "index=12" not in message


def test_claimed_validity_must_match(base: dict[str, Any], tmp_path: Path) -> None:
    entry = base["seeds"][0]["preferences"][0]
    entry["valid"][4] = not entry["valid"][4]
    assert "index=4" in rejected(base, tmp_path)


def test_judge_rewards_on_a_task_without_judge(base: dict[str, Any], tmp_path: Path) -> None:
    entry = base["seeds"][0]["preferences"][0]
    entry["judge_rewards"] = entry["rewards"]
    assert "has no held-out judge" in rejected(base, tmp_path)


def test_contexts_on_an_unconditional_task(base: dict[str, Any], tmp_path: Path) -> None:
    entry = base["seeds"][0]["preferences"][0]
    entry["contexts"] = ["doc-1"] * len(entry["sequences"])
    assert "not prompt-conditioned" in rejected(base, tmp_path)


def test_per_sample_fields_must_have_one_item_per_sequence(base: dict[str, Any], tmp_path: Path) -> None:
    base["seeds"][0]["preferences"][0]["valid"].pop()
    assert "valid has 127 items for 128 sequences" in rejected(base, tmp_path)


def test_sample_counts(base: dict[str, Any], tmp_path: Path) -> None:
    for seed in base["seeds"]:
        for entry in seed["preferences"]:
            for field in ("sequences", "rewards", "valid", "logprobs", "prior_logprobs"):
                if entry.get(field) is not None:
                    entry[field] = entry[field][:100]
    assert "100 samples per preference" in rejected(base, tmp_path)
    base["seeds"][0]["preferences"][0]["sequences"].append("A")
    assert "sample counts differ" in rejected(base, tmp_path)


def test_duplicate_seeds(base: dict[str, Any], tmp_path: Path) -> None:
    base["seeds"][2]["seed"] = 0
    assert "seeds [0] appear more than once" in rejected(base, tmp_path)


def test_fewer_seeds_are_unranked_and_zero_is_rejected(base: dict[str, Any], tmp_path: Path) -> None:
    base["seeds"] = base["seeds"][: MIN_RANKED_SEEDS - 1]
    path = write_submission(tmp_path, base)
    report = validate_files([path], root=tmp_path)
    assert report.ok and not report.valid[0].ranked
    assert f"fewer than {MIN_RANKED_SEEDS} seeds (3)" in report.valid[0].shape_blockers()
    base["seeds"] = []
    assert "should be non-empty" in rejected(base, tmp_path)


def test_duplicate_names_across_files(base: dict[str, Any], tmp_path: Path) -> None:
    first = write_submission(tmp_path, base)
    base["name"] = base["name"].upper()  # same name, case-insensitively
    second = tmp_path / env_stem(ENV_ID) / "copy.json.gz"
    second.write_bytes(dumps_submission(base))
    report = validate_files([first, second])
    assert not report.valid and len(report.errors) == 2
    assert all("duplicate submission name" in e for e in report.errors)
    assert str(second) in report.errors[0] and str(first) in report.errors[1]


def test_file_in_the_wrong_place(base: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "morbench_Motifs-v0" / "random-letters.json.gz"
    path.parent.mkdir()
    path.write_bytes(dumps_submission(base))
    assert f"must be at {tmp_path}/{env_stem(ENV_ID)}/random-letters.json.gz" in file_error(path, root=tmp_path)


def test_file_over_the_size_limit(base: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_text(json.dumps(base) + " " * schema.MAX_FILE_BYTES)
    assert "over the size limit" in file_error(path)


def test_gzip_bomb(base_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "bomb.json.gz"
    path.write_bytes(gzip.compress(b" " * 4096))
    monkeypatch.setattr(schema, "MAX_JSON_BYTES", 1024)
    assert "decompresses to more than 1024 bytes" in file_error(path)


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "data:text/html,<script>alert(1)</script>", "https://x.org/a b", "//evil"]
)
def test_code_links_must_be_plain_http(base: dict[str, Any], tmp_path: Path, url: str) -> None:
    base["code_url"] = url
    assert "$.code_url" in rejected(base, tmp_path)


def test_control_characters_in_the_name(base: dict[str, Any], tmp_path: Path) -> None:
    base["name"] = "two\nlines"
    assert "$.name" in rejected(base, tmp_path)


def test_every_error_is_collected(base: dict[str, Any], tmp_path: Path) -> None:
    good = write_submission(tmp_path, base)
    bad = write_raw(tmp_path / "x" / "bad.json", "{")
    report = validate_files([good, bad])
    assert len(report.valid) == 1 and len(report.errors) == 1


def test_validate_submission_in_memory(base: dict[str, Any]) -> None:
    tasks = TaskCache()
    assert validate_submission(base, "memory", tasks).name == "Random letters"
    base["seeds"][0]["preferences"][0]["rewards"][0] = [0.9, 0.9]
    with pytest.raises(SubmissionError, match=r"^memory: 1 sample"):
        validate_submission(base, "memory", tasks)


def test_cli_validate(base: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_submission(tmp_path, base)
    assert main(["leaderboard", "validate", "--submissions", str(tmp_path)]) == 0
    assert "1 valid, 0 rejected" in capsys.readouterr().out
    base["name"] = "Other"
    base["schema_version"] = 9
    write_submission(tmp_path, base)
    assert main(["leaderboard", "validate", "--submissions", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "1 valid, 1 rejected" in captured.out and "REJECTED" in captured.err
    assert main(["leaderboard", "validate", str(good)]) == 0


def test_read_submission_round_trip(base_file: Path) -> None:
    assert read_submission(base_file)["schema_version"] == schema.SCHEMA_VERSION == 2


def test_schema_file_is_a_valid_json_schema() -> None:
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(schema.load_schema())
    assert schema.load_schema()["properties"]["schema_version"] == {
        "enum": [1, 2],
        "description": schema.load_schema()["properties"]["schema_version"]["description"],
    }


def test_overlong_sequence(base: dict[str, Any], tmp_path: Path) -> None:
    base["seeds"][0]["preferences"][0]["sequences"][50] = "A" * (schema.MAX_SEQUENCE_CHARS + 1)
    assert "$.seeds[0].preferences[0].sequences[50]" in rejected(base, tmp_path)


def test_an_unexpected_failure_rejects_the_file_without_crashing(
    base: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import morbench.leaderboard.validate as validate_module

    def broken(*args, **kwargs):
        raise KeyError("boom")

    monkeypatch.setattr(validate_module, "validate_submission", broken)
    assert "could not be checked (KeyError: 'boom')" in rejected(base, tmp_path)
