"""Rendering of the board: ``README.md`` (markdown tables), ``site/index.html`` and the Pareto-front plots (SVG).

Every string that comes from a submission goes through :func:`md` (markdown) or :func:`h` (HTML/SVG) and is
never interpreted: the page has no inline script, its only script (``leaderboard.js``) moves table rows and
never writes HTML, a Content-Security-Policy allows nothing but the page's own files, and code links are
rendered only for ``http(s)`` URLs of a strict character set. Output is deterministic: no timestamps, sorted
keys, fixed number formats, hand-written SVG (no font or library version in the bytes).
"""

from __future__ import annotations

import dataclasses
import html
import itertools
import json
import math
import re
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any

import numpy as np

__all__ = [
    "PRIMARY_METRIC",
    "EnvBoard",
    "LeaderboardEntry",
    "h",
    "md",
    "render_html",
    "render_markdown",
    "render_plot_svg",
    "safe_url",
    "site_assets",
]

PRIMARY_METRIC = "hypervolume"
SAFE_URL = re.compile(r"^https?://[A-Za-z0-9\-._~:/?#@!$&*+,;=%]+$")
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()#+!|~])")  # not &<>"' (html.escape makes them entities)


@dataclasses.dataclass
class LeaderboardEntry:
    """One scored submission: its record, per-seed results and the aggregate over seeds."""

    submission: dict[str, Any]
    results: list[dict[str, Any]]
    summary: dict[str, Any]
    samples_per_preference: int
    slug: str
    rank: int | None = None
    kind: str = "legacy"  # baseline, policy, samples, legacy (schema version 1)
    verification: dict[str, Any] | None = None  # the passing ledger record of the file's current bytes
    reason: str | None = None  # why it is unranked
    intervals: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # t-intervals over seeds
    protocol_samples: int | None = None
    group: int | None = None  # rank group (1: the leader's)
    vs_leader: dict[str, Any] | None = None  # hypervolume minus the leader's: diff, low, high, paired

    @property
    def name(self) -> str:
        """The name shown on the board."""
        return self.submission["name"]

    def metric(self, key: str) -> dict[str, Any] | None:
        """The over-seeds summary of metric ``key`` (mean, std, ci95, ...), or None when it was not computed."""
        value = self.summary.get(key)
        return value if isinstance(value, dict) else None

    def mean(self, key: str) -> float | None:
        """The mean over seeds of metric ``key``, or None."""
        value = self.metric(key)
        return value["mean"] if value is not None else None

    def interval(self, key: str) -> tuple[float | None, float | None]:
        """The 95% t-interval over seeds of metric ``key`` (None ends with fewer than 2 seeds)."""
        value = self.intervals.get(key) or {}
        return value.get("low"), value.get("high")

    @property
    def budget(self) -> dict[str, Any] | None:
        """The training budget of a baseline entry: sampled tokens, oracle calls and compute convention.

        None for any other entry: what it trained on is not known.
        """
        provenance = self.submission.get("provenance")
        if not isinstance(provenance, dict) or provenance.get("kind") != "baseline":
            return None
        budget = provenance.get("budget")
        budget = budget if isinstance(budget, dict) else {}
        return {
            "sampled_tokens": budget.get("sampled_tokens"),
            "oracle_calls": budget.get("oracle_calls"),
            "convention": provenance.get("compute_convention") or budget.get("convention") or "total",
        }

    @property
    def kl_verified(self) -> bool:
        """Whether the KL to the prior comes from a verification (re-produced samples), not from the claims."""
        return self.verification is not None


@dataclasses.dataclass
class EnvBoard:
    """The submissions of one env: ranked (enough seeds) and unranked ones, with the task they were scored on."""

    env_id: str
    task: Any
    ranked: list[LeaderboardEntry]
    unranked: list[LeaderboardEntry]
    # the ranked entries by training budget (label, entries), each ranked on its own; one track: one table
    tracks: list[tuple[str, list[LeaderboardEntry]]] = dataclasses.field(default_factory=list)

    @property
    def stem(self) -> str:
        """The env id as a file-name stem (``morbench_QM9-v0``)."""
        return self.env_id.replace("/", "_")

    @property
    def entries(self) -> list[LeaderboardEntry]:
        """Ranked entries first, then unranked ones."""
        return [*self.ranked, *self.unranked]


def budget_label(budget: dict[str, Any] | None) -> str:
    """How a budget track is named on the board."""
    if budget is None:
        return "not a baseline: training budget not known"
    parts = [
        f"{budget[k]:,} {what}"
        for k, what in (("sampled_tokens", "sampled tokens"), ("oracle_calls", "oracle calls"))
        if budget.get(k) is not None
    ]
    return f"{' and '.join(parts) or 'no budget limit'} ({budget['convention']} convention)"


TRACKS_NOTE = (
    "Entries of different training budgets are never ranked against each other: each budget (sampled tokens, "
    "oracle calls, compute convention) has its own ranked table, and entries whose budget is not known (not a "
    "re-produced baseline) have theirs."
)


# -- escaping -------------------------------------------------------------------------------------------------
def h(value: Any) -> str:
    """HTML-escape any value (quotes included), for text and attribute values."""
    return html.escape(str(value), quote=True)


def md(value: Any) -> str:
    """Escape a string for a markdown table cell: one line, markdown punctuation backslashed, HTML entities."""
    text = " ".join(str(value).split())
    return html.escape(MARKDOWN_SPECIALS.sub(r"\\\1", text), quote=True)


def safe_url(url: Any) -> str | None:
    """``url`` if it is an http(s) URL of plain characters, else None (it is then shown as text, not linked)."""
    return url if isinstance(url, str) and len(url) <= 500 and SAFE_URL.match(url) else None


# -- numbers --------------------------------------------------------------------------------------------------
def fmt(value: float | None, digits: int = 3) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.00"


def fmt_ci(metric: dict[str, Any] | None, digits: int = 3) -> str:
    if metric is None or metric.get("mean") is None:
        return "n/a"
    low, high = metric.get("ci95") or (None, None)
    interval = f" [{fmt(low, digits)}, {fmt(high, digits)}]" if low is not None and high is not None else ""
    return fmt(metric["mean"], digits) + interval


def sort_key(value: float | None) -> str:
    """The ``data-sort`` attribute of a numeric cell: empty for n/a (the page sorts those last).

    Six significant digits: enough to order the rows, and short. Numbers the board computes itself (the prior's
    re-sampled judge gap) can still move in the sixth digit on another CPU; the committed-board test allows that.
    """
    return "" if value is None or not math.isfinite(value) else f"{float(value):.6g}"


# -- the table ------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Column:
    title: str
    numeric: bool
    value: Callable[[LeaderboardEntry], float | str | None]
    text: Callable[[LeaderboardEntry], str]
    help: str = ""


def _metric_column(title: str, key: str, help_text: str, digits: int = 3, ci: bool = False) -> Column:
    return Column(
        title,
        True,
        lambda e: e.mean(key),
        (lambda e: fmt_ci(e.metric(key), digits)) if ci else (lambda e: fmt(e.mean(key), digits)),
        help_text,
    )


def fmt_t(entry: LeaderboardEntry, key: str, digits: int = 3) -> str:
    """Mean over seeds with its 95% t-interval in brackets."""
    value = entry.intervals.get(key) or {}
    mean = value.get("mean", entry.mean(key))
    if mean is None:
        return "n/a"
    low, high = value.get("low"), value.get("high")
    interval = f" [{fmt(low, digits)}, {fmt(high, digits)}]" if low is not None and high is not None else ""
    return fmt(mean, digits) + interval


def fmt_vs_leader(entry: LeaderboardEntry) -> str:
    if entry.rank == 1:
        return "leader"
    vs = entry.vs_leader
    if vs is None:
        return "n/a"
    interval = f" [{fmt(vs['low'])}, {fmt(vs['high'])}]" if vs.get("low") is not None else ""
    return f"{fmt(vs['diff'])}{interval}" + ("" if vs.get("paired") else " (unpaired)")


def fmt_kl(entry: LeaderboardEntry) -> str:
    text = fmt(entry.mean("kl_to_prior"), 2)
    return text if entry.kl_verified or text == "n/a" else f"{text} (self-reported)"


def verified_text(entry: LeaderboardEntry) -> str:
    record = entry.verification
    return str(record.get("how", "yes")) if record else "no"


SELF = "self-reported"
RANKED_COLUMNS: tuple[Column, ...] = (
    Column("#", True, lambda e: e.rank, lambda e: str(e.rank) if e.rank is not None else "-", "rank by hypervolume"),
    Column(
        "Group",
        True,
        lambda e: e.group,
        lambda e: str(e.group) if e.group is not None else "-",
        "rank group: entries whose 95% t-interval of hypervolume overlaps the group head's (1: the leader's)",
    ),
    Column("Submission", False, lambda e: e.name, lambda e: e.name, "name given at submission"),
    Column("Seeds", True, lambda e: len(e.results), lambda e: str(len(e.results)), "distinct seeds submitted"),
    Column(
        "Hypervolume [95% t-CI]",
        True,
        lambda e: e.mean("hypervolume"),
        lambda e: fmt_t(e, "hypervolume"),
        "primary metric (bias-corrected where the scorer corrects it); t-interval over seeds",
    ),
    Column(
        "vs leader [95% CI]",
        True,
        lambda e: (e.vs_leader or {}).get("diff"),
        fmt_vs_leader,
        "hypervolume minus the leader's: seed-paired t-interval when the seeds match, else Welch",
    ),
    Column(
        "Served utility [95% t-CI]",
        True,
        lambda e: e.mean("served_utility"),
        lambda e: fmt_t(e, "served_utility"),
        "mean over the grid of w . mean reward at w",
    ),
    _metric_column("Avg reward", "average_reward", "mean over objectives at the uniform preference"),
    _metric_column("ICV", "icv", "mean/std of the per-objective means at the uniform preference", digits=2),
    _metric_column("Expected utility", "expected_utility", "mean over the grid of the best weighted reward"),
    _metric_column(
        "Judge gap vs prior",
        "judge_gap_vs_prior",
        "training-oracle minus held-out-judge average reward, minus the untuned prior's (0: as the prior; "
        "higher: the training oracle is exploited more)",
    ),
    _metric_column("Validity", "validity", "fraction of valid samples at the uniform preference"),
    Column(
        "KL to prior",
        True,
        lambda e: e.mean("kl_to_prior"),
        fmt_kl,
        "from the verifier's own log-probabilities of the re-sampled sequences (else marked self-reported)",
    ),
    _metric_column(f"Oracle calls ({SELF})", "compute.oracle_calls", "training oracle calls per seed", digits=0),
    _metric_column(f"Sampled tokens ({SELF})", "compute.sampled_tokens", "training tokens per seed", digits=0),
    _metric_column(f"Wall s ({SELF})", "compute.wall_seconds", "training wall-clock seconds per seed", digits=0),
    Column("Verified", False, verified_text, verified_text, "how verify re-produced the samples"),
)
UNRANKED_COLUMNS: tuple[Column, ...] = (
    Column("Submission", False, lambda e: e.name, lambda e: e.name, "name given at submission"),
    Column("Why unranked", False, lambda e: e.reason or "", lambda e: e.reason or "", "what keeps it off the ranking"),
    Column("Provenance", False, lambda e: e.kind, lambda e: e.kind, "baseline, policy, samples, or legacy (v1)"),
    Column("Seeds", True, lambda e: len(e.results), lambda e: str(len(e.results)), "distinct seeds submitted"),
    Column(
        "Samples/pref",
        True,
        lambda e: e.samples_per_preference,
        lambda e: str(e.samples_per_preference),
        "samples per preference and seed (ranked entries use the protocol's count)",
    ),
    Column(
        "Hypervolume (not ranked)",
        True,
        lambda e: e.mean("hypervolume"),
        lambda e: fmt(e.mean("hypervolume")),
        "mean over seeds; not comparable with the ranked table",
    ),
    _metric_column("Avg reward", "average_reward", "mean over objectives at the uniform preference"),
    _metric_column("ICV", "icv", "mean/std of the per-objective means at the uniform preference", digits=2),
    _metric_column("Uniqueness", "uniqueness", "distinct valid samples / valid samples at the uniform preference"),
    _metric_column("Novelty", "domain.novelty", "the task's novelty metric at the uniform preference (if any)"),
    _metric_column("Validity", "validity", "fraction of valid samples at the uniform preference"),
    Column("KL to prior", True, lambda e: e.mean("kl_to_prior"), fmt_kl, "from submitted log-probabilities"),
)


def _cell_text(column: Column, entry: LeaderboardEntry) -> str:
    return column.text(entry)


# -- markdown -------------------------------------------------------------------------------------------------
def _markdown_table(entries: Sequence[LeaderboardEntry], columns: Sequence[Column] = RANKED_COLUMNS) -> list[str]:
    header = "| " + " | ".join(column.title for column in columns) + " |"
    rule = "|" + "|".join("---:" if column.numeric else "---" for column in columns) + "|"
    rows = []
    for entry in entries:
        cells = []
        for column in columns:
            text = _cell_text(column, entry)  # numbers and fixed text, made here
            if column.title in ("Why unranked", "Provenance"):
                text = md(text)
            if column.title == "Submission":
                text = f"**{md(text)}**"  # the only cell that comes from the submission
            cells.append(text)
        rows.append("| " + " | ".join(cells) + " |")
    return [header, rule, *rows]


def _markdown_details(entry: LeaderboardEntry) -> str:
    submission = entry.submission
    url = safe_url(submission.get("code_url"))
    code = f"[code](<{url}>)" if url else "no code link"
    description = md(submission.get("description") or "(no description)")
    seeds = ", ".join(str(r["seed"]) for r in entry.results)
    return (
        f"- **{md(entry.name)}** (method {md(submission['method'])}, seeds {seeds}, morbench "
        f"{md(submission['morbench']['version'])}, {code}): {description}"
    )


def _markdown_env(board: EnvBoard) -> list[str]:
    task = board.task
    lines = [
        f"## {md(board.env_id)}",
        "",
        f"Objectives: {', '.join(md(n) for n in task.objective_names)}; reference point "
        f"{_vector(task.reference_point)}; {len(task.preference_grid)} preferences; protocol: "
        f"{task.protocol.samples_per_preference} samples per preference.",
        "",
    ]
    if len(board.tracks) > 1:
        lines += [TRACKS_NOTE, ""]
        for label, entries in board.tracks:
            lines += [f"### Budget: {md(label)}", "", *_markdown_table(entries), ""]
    elif board.ranked:
        lines += [*_markdown_table(board.ranked), ""]
    else:
        lines += [f"No ranked submission yet ({_rank_rule()}).", ""]
    lines += [f"![Pareto fronts of {md(board.env_id)}](site/plots/{board.stem}.svg)", ""]
    if board.unranked:
        lines += [f"### {UNRANKED_TITLE}", "", UNRANKED_NOTE, ""]
        lines += [*_markdown_table(board.unranked, UNRANKED_COLUMNS), ""]
    lines += ["### Submissions", ""]
    lines += [_markdown_details(entry) for entry in board.entries] + [""]
    return lines


UNRANKED_TITLE = "Unranked: not verified, samples only, too few seeds or not at the protocol's sample count"
UNRANKED_NOTE = (
    "These rows are *not* comparable with the ranked table: their samples were not re-produced by the leaderboard "
    "(or too few seeds / samples), so their numbers are self-reported."
)


def _rank_rule() -> str:
    return (
        f"a ranked entry is verified by `morbench leaderboard verify`, with at least {_min_seeds()} seeds at the "
        "protocol's sample count"
    )


def _min_seeds() -> int:
    from morbench.leaderboard.validate import MIN_RANKED_SEEDS

    return MIN_RANKED_SEEDS


def _vector(values: Any) -> str:
    return "(" + ", ".join(f"{float(v):g}" for v in values) + ")"


def render_markdown(boards: Sequence[EnvBoard]) -> str:
    """``leaderboard/README.md``."""
    from morbench.leaderboard.validate import REWARD_TOLERANCE

    lines = [
        "# morbench leaderboard",
        "",
        "Generated by `morbench leaderboard build` from the files in `submissions/`; do not edit by hand. "
        "Interactive page: [`site/index.html`](site/index.html). How to submit, the format and the rules: "
        "[`SUBMITTING.md`](SUBMITTING.md).",
        "",
        f"Every submitted sequence is re-scored with the env's oracle (claimed rewards must match within "
        f"{REWARD_TOLERANCE:g}) and every metric is recomputed from the raw samples. Only **verified** entries "
        "are ranked: `morbench leaderboard verify` re-produced their samples exactly (re-training the baseline, or "
        "re-sampling its sha256-checked model files) and recorded the file's sha256 in `verified.json`; they "
        f"need at least {_min_seeds()} seeds at the protocol's sample count. Ranked by **{PRIMARY_METRIC}** (mean "
        "over seeds, 95% t-interval over seeds in brackets); *Group*: entries whose interval overlaps the group "
        "head's share its rank group (1: the leader's); *vs leader*: hypervolume minus the leader's, seed-paired. "
        "KL to prior is the verifier's own; compute columns are per seed and self-reported. Everything else is in "
        "the unranked table, with the reason. Metric definitions: [`docs/metrics.md`](../docs/metrics.md).",
        "",
    ]
    if not boards:
        lines += ["No submissions yet.", ""]
    for board in boards:
        lines += _markdown_env(board)
    return "\n".join(lines).rstrip("\n") + "\n"


# -- HTML -----------------------------------------------------------------------------------------------------
def _html_table(
    entries: Sequence[LeaderboardEntry],
    board: EnvBoard,
    caption: str,
    table_id: str,
    columns: Sequence[Column] = RANKED_COLUMNS,
) -> list[str]:
    out = [f'<table class="board sortable" id="{h(table_id)}">', f"<caption>{h(caption)}</caption>", "<thead><tr>"]
    for column in columns:
        kind = "number" if column.numeric else "text"
        out.append(
            f'<th scope="col" data-type="{kind}" title="{h(column.help)}" tabindex="0" aria-sort="none">'
            f"{h(column.title)}</th>"
        )
    out.append("</tr></thead>")
    out.append("<tbody>")
    for entry in entries:
        cells = []
        for column in columns:
            value = column.value(entry)
            text = h(_cell_text(column, entry))
            if column.title == "Submission":
                anchor = f"sub-{board.stem}-{entry.slug}"
                cells.append(f'<td data-sort="{h(entry.name.casefold())}"><a href="#{h(anchor)}">{text}</a></td>')
            elif column.numeric:
                numeric = float(value) if isinstance(value, (int, float)) else None
                cells.append(f'<td class="num" data-sort="{sort_key(numeric)}">{text}</td>')
            else:
                cells.append(f'<td data-sort="{h(str(value).casefold())}">{text}</td>')
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return out


def _definition_list(items: Sequence[tuple[str, str]]) -> list[str]:
    out = ['<dl class="meta">']
    for key, value_html in items:
        out.append(f"<dt>{h(key)}</dt><dd>{value_html}</dd>")
    out.append("</dl>")
    return out


def _hardware_text(hardware: dict[str, Any]) -> str:
    keys = ("processor", "cpu_count", "accelerator", "torch", "platform")
    parts = [f"{key}={hardware[key]}" for key in keys if key in hardware]
    rest = sorted(k for k in hardware if k not in keys)
    parts += [f"{key}={hardware[key]}" for key in rest]
    return ", ".join(str(p) for p in parts) or "not recorded"


def _seed_table(entry: LeaderboardEntry) -> list[str]:
    out = [
        '<table class="seeds"><thead><tr><th scope="col">Seed</th><th scope="col">Created</th>'
        '<th scope="col">Commit</th><th scope="col">Oracle calls</th><th scope="col">Sampled tokens</th>'
        '<th scope="col">Wall s</th><th scope="col">Hardware</th></tr></thead><tbody>'
    ]
    for seed in sorted(entry.submission["seeds"], key=lambda s: s["seed"]):
        compute = seed["compute"]
        out.append(
            "<tr>"
            f"<td>{h(seed['seed'])}</td><td>{h(seed.get('created') or 'n/a')}</td>"
            f"<td><code>{h((seed.get('commit') or 'n/a')[:12])}</code></td>"
            f'<td class="num">{h(fmt(compute.get("oracle_calls"), 0))}</td>'
            f'<td class="num">{h(fmt(compute.get("sampled_tokens"), 0))}</td>'
            f'<td class="num">{h(fmt(compute.get("wall_seconds"), 1))}</td>'
            f"<td>{h(_hardware_text(seed.get('hardware') or {}))}</td>"
            "</tr>"
        )
    out.append("</tbody></table>")
    return out


def _metrics_table(entry: LeaderboardEntry) -> list[str]:
    out = [
        '<table class="metrics"><thead><tr><th scope="col">Metric</th><th scope="col">Mean</th>'
        '<th scope="col">Std</th><th scope="col">95% CI (bootstrap)</th><th scope="col">Seeds</th></tr></thead>'
        "<tbody>"
    ]
    for key in sorted(k for k, v in entry.summary.items() if isinstance(v, dict)):
        metric = entry.summary[key]
        low, high = metric.get("ci95") or (None, None)
        out.append(
            f'<tr><td>{h(key)}</td><td class="num">{h(fmt(metric.get("mean"), 4))}</td>'
            f'<td class="num">{h(fmt(metric.get("std"), 4))}</td>'
            f'<td class="num">{h(fmt(low, 4))} to {h(fmt(high, 4))}</td><td class="num">{h(metric.get("n"))}</td></tr>'
        )
    out.append("</tbody></table>")
    return out


def _provenance_text(submission: dict[str, Any]) -> str:
    provenance = submission.get("provenance")
    if not provenance:
        return "none (schema version 1)"
    kind = provenance["kind"]
    if kind == "baseline":
        budget = ", ".join(f"{k}={v}" for k, v in sorted(provenance["budget"].items()) if v is not None) or "none"
        saved = sum(len(a["files"]) for a in provenance.get("artifacts") or [])
        return (
            f"baseline {provenance['method']} (budget {budget}; {provenance['eval_samples']} samples per "
            f"preference; {saved} saved model files with sha256)"
        )
    if kind == "policy":
        models = provenance.get("models") or [m for ms in provenance["models_by_seed"].values() for m in ms]
        return f"policy artifacts: {len(models)} model folder(s), serving rule {provenance['serving']}"
    return "samples only (no policy: cannot be verified)"


def _verification_text(entry: LeaderboardEntry) -> str:
    record = entry.verification
    if record is None:
        return "not verified (the file's current bytes have no passing record in verified.json)"
    seconds = [v.get("sampling_seconds") for v in (record.get("seeds") or {}).values()]
    sampling = f"; sampling {fmt(float(np.mean(seconds)), 1)} s per seed" if seconds and None not in seconds else ""
    return (
        f"verified by {record.get('how')} on {record.get('date')} (morbench {record.get('morbench_version')}, "
        f"commit {(record.get('commit') or 'n/a')[:12]}, {fmt(record.get('seconds'), 0)} s{sampling})"
    )


def _details(entry: LeaderboardEntry, board: EnvBoard) -> list[str]:
    submission = entry.submission
    url = safe_url(submission.get("code_url"))
    if url:
        code = f'<a href="{h(url)}" rel="nofollow noopener noreferrer">{h(url)}</a>'
    elif submission.get("code_url"):
        code = f"{h(submission['code_url'])} (not linked: only plain http(s) links are)"
    else:
        code = "none given"
    status = f"rank {entry.rank}, group {entry.group}" if entry.rank is not None else f"unranked: {entry.reason}"
    if entry.rank is not None and len(board.tracks) > 1:
        status += f" among the entries of budget {budget_label(entry.budget)}"
    config = json.dumps(submission.get("config") or {}, indent=2, sort_keys=True, ensure_ascii=False)
    env = submission["env"]
    items = [
        ("Status", h(status)),
        ("Method id", f"<code>{h(submission['method'])}</code>"),
        ("Code", code),
        ("Seeds", h(", ".join(str(r["seed"]) for r in entry.results))),
        ("Samples per preference", h(entry.samples_per_preference)),
        ("Provenance", h(_provenance_text(submission))),
        ("Verification", h(_verification_text(entry))),
        (
            "morbench",
            f"{h(submission['morbench']['version'])}, commit "
            f"<code>{h(submission['morbench'].get('commit') or 'n/a')}</code>",
        ),
        (
            "Env",
            f"<code>{h(env['id'])}</code> v{h(env['version'])}, kwargs <code>{h(json.dumps(env['kwargs']))}</code>",
        ),
    ]
    anchor = f"sub-{board.stem}-{entry.slug}"
    return [
        f'<details class="submission" id="{h(anchor)}">',
        f"<summary>{h(entry.name)}</summary>",
        f'<p class="description">{h(submission.get("description") or "(no description)")}</p>',
        *_definition_list(items),
        "<h4>Compute and hardware per seed (self-reported)</h4>",
        *_seed_table(entry),
        "<h4>Configuration</h4>",
        f"<pre>{h(config)}</pre>",
        "<h4>All metrics (recomputed from the raw samples)</h4>",
        *_metrics_table(entry),
        "</details>",
    ]


def _html_env(board: EnvBoard) -> list[str]:
    task = board.task
    section = [
        f'<section class="env" id="env-{h(board.stem)}">',
        f"<h2>{h(board.env_id)}</h2>",
        f"<p>Objectives: {h(', '.join(task.objective_names))}; reference point {h(_vector(task.reference_point))}; "
        f"{len(task.preference_grid)} preferences; protocol: {task.protocol.samples_per_preference} samples per "
        "preference. Click a column header to sort.</p>",
    ]
    if len(board.tracks) > 1:
        section.append(f"<p>{h(TRACKS_NOTE)}</p>")
        for i, (label, entries) in enumerate(board.tracks):
            section.append(f"<h3>Budget: {h(label)}</h3>")
            caption = f"{board.env_id}, budget {label}: ranked by {PRIMARY_METRIC}"
            section += _html_table(entries, board, caption, f"t-{board.stem}-{i}")
    elif board.ranked:
        section += _html_table(board.ranked, board, f"{board.env_id}: ranked by {PRIMARY_METRIC}", f"t-{board.stem}")
    else:
        section.append(f"<p>No ranked submission yet ({h(_rank_rule())}).</p>")
    section.append(
        f'<figure><img src="plots/{h(board.stem)}.svg" alt="Pareto fronts of {h(board.env_id)}" class="plot">'
        "<figcaption>Mean reward vector at each preference (averaged over seeds), one panel per pair of "
        "objectives; grey crosses: the true Pareto front where it is known.</figcaption></figure>"
    )
    if board.unranked:
        section.append(f"<h3>{h(UNRANKED_TITLE)}</h3>")
        section.append(f"<p>{h(UNRANKED_NOTE.replace('*', ''))}</p>")
        section += _html_table(board.unranked, board, f"{board.env_id}: unranked", f"u-{board.stem}", UNRANKED_COLUMNS)
    section.append("<h3>Submissions</h3>")
    for entry in board.entries:
        section += _details(entry, board)
    section.append("</section>")
    return section


def render_html(boards: Sequence[EnvBoard]) -> str:
    """``leaderboard/site/index.html`` (uses the sibling ``leaderboard.css``, ``leaderboard.js`` and ``plots/``)."""
    from morbench.leaderboard.validate import REWARD_TOLERANCE

    nav = " ".join(f'<a href="#env-{h(b.stem)}">{h(b.env_id)}</a>' for b in boards)
    body = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; script-src 'self'; "
        "style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>morbench leaderboard</title>",
        '<link rel="stylesheet" href="leaderboard.css">',
        '<script src="leaderboard.js" defer></script>',
        "</head>",
        "<body>",
        "<header><h1>morbench leaderboard</h1>",
        f"<p>Every submitted sequence is re-scored with the env's oracle (claimed rewards must match within "
        f"{REWARD_TOLERANCE:g}); every metric is recomputed from the raw samples. Only verified entries are "
        "ranked (<code>morbench leaderboard verify</code> re-produced their samples exactly and recorded the file's "
        f"sha256), with at least {_min_seeds()} seeds at the protocol's sample count; ranked by {PRIMARY_METRIC} "
        "(mean over seeds, 95% t-interval over seeds in brackets), with rank groups (overlapping intervals) and a "
        "seed-paired comparison against the leader. Compute is self-reported. Generated by "
        "<code>morbench leaderboard build</code>; how to submit: "
        '<a href="../SUBMITTING.md">SUBMITTING.md</a>.</p>',
        f"<nav>{nav}</nav></header>",
        "<main>",
    ]
    if not boards:
        body.append("<p>No submissions yet.</p>")
    for board in boards:
        body += _html_env(board)
    body += ["</main>", "</body>", "</html>"]
    return "\n".join(body) + "\n"


def site_assets() -> dict[str, str]:
    """The page's stylesheet and script (``morbench/leaderboard/assets/``)."""
    folder = resources.files("morbench.leaderboard").joinpath("assets")
    return {name: folder.joinpath(name).read_text(encoding="utf-8") for name in ("leaderboard.css", "leaderboard.js")}


# -- plots ----------------------------------------------------------------------------------------------------
PANEL = 240  # px, square plotting area
MARGIN = 44


def _bounds(task: Any, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    low = np.asarray(task.reward_space.low, dtype=np.float64)
    high = np.asarray(task.reward_space.high, dtype=np.float64)
    if points.size:
        low = np.where(np.isfinite(low), low, points.min(axis=0))
        high = np.where(np.isfinite(high), high, points.max(axis=0))
    low = np.where(np.isfinite(low), low, 0.0)
    high = np.where(np.isfinite(high) & (high > low), high, low + 1.0)
    return low, high


def preference_means(entry: LeaderboardEntry) -> np.ndarray:
    """Per-preference mean reward vectors, averaged over seeds (rows in grid order)."""
    stacked = np.asarray([[p["mean"] for p in r["per_preference"]] for r in entry.results], dtype=np.float64)
    return stacked.mean(axis=0)


def render_plot_svg(board: EnvBoard) -> str:
    """One panel per pair of objectives: each submission's per-preference means, and the true front if known."""
    task = board.task
    names = list(task.objective_names)
    pairs = list(itertools.combinations(range(len(names)), 2)) or [(0, 0)]
    series = [(entry, preference_means(entry)) for entry in board.entries]
    front = task.pareto_front()
    front = None if front is None else np.asarray(front, dtype=np.float64)
    every = [points for _, points in series] + ([front] if front is not None else [])
    low, high = _bounds(task, np.concatenate(every) if every else np.zeros((0, len(names))))
    cell = PANEL + 2 * MARGIN
    legend_height = 18 * (len(series) + (front is not None)) + 12
    width, height = cell * len(pairs), cell + legend_height
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
    ]
    for panel, (i, j) in enumerate(pairs):
        out += _panel(panel * cell + MARGIN, MARGIN, i, j, names, low, high, series, front)
    y = cell + 8
    for index, (entry, _) in enumerate(series):
        color = PALETTE[index % len(PALETTE)]
        label = entry.name + ("" if entry.rank is not None else " (unranked)")
        out.append(f'<circle cx="{MARGIN + 5}" cy="{y + 5}" r="4" fill="{color}"/>')
        out.append(f'<text x="{MARGIN + 14}" y="{y + 9}">{h(label)}</text>')
        y += 18
    if front is not None:
        out += _cross(MARGIN + 5, y + 5)
        out.append(f'<text x="{MARGIN + 14}" y="{y + 9}">true Pareto front (projected)</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _panel(
    x0: float,
    y0: float,
    i: int,
    j: int,
    names: list[str],
    low: np.ndarray,
    high: np.ndarray,
    series: list[tuple[LeaderboardEntry, np.ndarray]],
    front: np.ndarray | None,
) -> list[str]:
    def px(value: float, axis: int) -> float:
        return x0 + (value - low[axis]) / (high[axis] - low[axis]) * PANEL

    def py(value: float, axis: int) -> float:
        return y0 + PANEL - (value - low[axis]) / (high[axis] - low[axis]) * PANEL

    out = [f'<rect x="{x0}" y="{y0}" width="{PANEL}" height="{PANEL}" fill="none" stroke="#444444"/>']
    for fraction in (0.0, 0.5, 1.0):
        vx = low[i] + fraction * (high[i] - low[i])
        vy = low[j] + fraction * (high[j] - low[j])
        out.append(f'<text x="{px(vx, i):.1f}" y="{y0 + PANEL + 14}" text-anchor="middle">{vx:.2g}</text>')
        out.append(f'<text x="{x0 - 4}" y="{py(vy, j) + 4:.1f}" text-anchor="end">{vy:.2g}</text>')
    out.append(f'<text x="{x0 + PANEL / 2}" y="{y0 + PANEL + 30}" text-anchor="middle">{h(names[i])}</text>')
    out.append(
        f'<text x="{x0 - 30}" y="{y0 + PANEL / 2}" text-anchor="middle" '
        f'transform="rotate(-90 {x0 - 30} {y0 + PANEL / 2})">{h(names[j])}</text>'
    )
    if front is not None:
        for point in np.unique(front[:, [i, j]], axis=0):
            out += _cross(px(point[0], i), py(point[1], j))
    for index, (_, points) in enumerate(series):
        color = PALETTE[index % len(PALETTE)]
        for point in points:
            out.append(
                f'<circle cx="{px(point[i], i):.1f}" cy="{py(point[j], j):.1f}" r="3.5" fill="{color}" '
                'fill-opacity="0.8"/>'
            )
    return out


def _cross(x: float, y: float, size: float = 3.0) -> list[str]:
    return [
        f'<path d="M{x - size:.1f},{y - size:.1f} L{x + size:.1f},{y + size:.1f} M{x - size:.1f},{y + size:.1f} '
        f'L{x + size:.1f},{y - size:.1f}" stroke="#999999" stroke-width="1"/>'
    ]
