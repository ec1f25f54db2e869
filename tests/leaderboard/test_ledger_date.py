"""The verification ledger's dates are written on every supported Python (>= 3.10: no ``datetime.UTC``)."""

import datetime
import json
import re

from morbench.leaderboard.verify import verify_file


def test_verify_file_dates_its_record_without_datetime_utc(tmp_path, monkeypatch):
    monkeypatch.delattr(datetime, "UTC", raising=False)  # as on Python 3.10, which pyproject.toml supports
    submission = tmp_path / "broken.json"
    submission.write_text("not a submission")
    ledger = tmp_path / "verified.json"
    outcome = verify_file(submission, ledger=ledger)
    assert outcome.verdict == "failed"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", outcome.record["date"])
    assert json.loads(ledger.read_text())["entries"][outcome.sha256]["date"] == outcome.record["date"]
