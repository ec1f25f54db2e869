"""Shared asset helpers: exact, content-verified manifests and the build reports' reproduction check."""

import os
import shutil
from pathlib import Path

import pytest

from morbench.assets import reproduction_check, verify_manifest, write_manifest
from morbench.errors import AssetError


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


# -- manifests: exact and verified by content ------------------------------------------------------------------
QM9_ASSETS = Path(__file__).resolve().parents[1] / "envs" / "qm9" / "assets"


def _asset_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "assets"
    (directory / "prior").mkdir(parents=True)
    (directory / "task.json").write_text('{"max_length": 31}')
    (directory / "prior" / "tokenizer.json").write_text('{"eos": 2}')
    write_manifest(directory)
    return directory


def test_unlisted_file_is_rejected_naming_it_and_the_rebuild_command(tmp_path):
    directory = _asset_dir(tmp_path)
    verify_manifest(directory, "morbench build-assets demo")
    (directory / "prior" / "special_tokens_map.json").write_text('{"eos_token": "C"}')
    with pytest.raises(AssetError, match=r"prior/special_tokens_map\.json.*does not list.*build-assets demo"):
        verify_manifest(directory, "morbench build-assets demo")


def test_subdirectory_with_its_own_manifest_is_verified_exactly_too(tmp_path):
    directory = tmp_path / "assets"
    (directory / "prior").mkdir(parents=True)
    (directory / "task.json").write_text("{}")
    (directory / "prior" / "model.bin").write_text("weights")
    write_manifest(directory / "prior")
    write_manifest(directory, ["task.json"])  # the prior is covered by its own manifest
    verify_manifest(directory, "rebuild")
    (directory / "prior" / "model.bin").write_text("WEIGHTS")
    with pytest.raises(AssetError, match=r"model\.bin is corrupt"):
        verify_manifest(directory, "rebuild")
    (directory / "prior" / "model.bin").write_text("weights")
    (directory / "prior" / "extra.json").write_text("{}")
    with pytest.raises(AssetError, match=r"extra\.json.*does not list"):
        verify_manifest(directory, "rebuild")


def test_same_size_edit_with_restored_mtime_is_caught(tmp_path):
    directory = _asset_dir(tmp_path)
    path = directory / "task.json"
    verify_manifest(directory, "rebuild")  # a first verification that a path/size/mtime cache would remember
    stat = path.stat()
    path.write_text('{"max_length": 99}')  # same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    with pytest.raises(AssetError, match=r"task\.json is corrupt"):
        verify_manifest(directory, "rebuild")


def test_extra_tokenizer_file_in_qm9_assets_fails_instead_of_changing_eos(tmp_path):
    import morbench

    copy = tmp_path / "qm9"
    shutil.copytree(QM9_ASSETS, copy)
    (copy / "prior" / "special_tokens_map.json").write_text('{"eos_token": "C"}')
    with pytest.raises(AssetError, match=r"special_tokens_map\.json.*build-assets qm9"):
        morbench.make("morbench/QM9-v0", assets_dir=copy)
