"""Findings: the paper's claims tested on committed study results, as tables, verdicts and plots.

Reads the compact ``results/studies/<name>/study.json`` files that ``morbench study`` writes
(:mod:`morbench.study`) and nothing else, so ``morbench findings`` regenerates ``docs/findings.md`` and the README's
headline block (between :data:`README_START` and :data:`README_END`) exactly from what is committed.

Every claim gets a table with 95% Student-t intervals over seeds, seed-paired comparisons (mean difference, its
95% interval, the paired t statistic and two-sided p) and a one-line verdict:

* ``A > B`` **holds** when the interval of the seed-paired difference lies above 0, **does not hold** when it lies
  below 0 or the two are identical, and is **inconclusive at this power** otherwise;
* ``A ~ B`` (a special case of the algorithm) **holds** when the interval lies inside ``+/- EQUIVALENCE_MARGIN``,
  **does not hold** when it lies entirely outside it, and is inconclusive otherwise;
* "an intermediate m is optimal" **holds** when the best interior m beats both m = 1 and m = T, **does not hold**
  when the better endpoint beats the best interior m, and is inconclusive otherwise. (Picking the best m from the
  same seeds favours the claim; "holds" is therefore optimistic, "does not hold" is not.)

The m-sweep also gets a descriptive trend (:func:`m_trend`): each seed's least-squares slope of average reward on
log2 m, whose seed-paired interval says whether reward falls or rises with m.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from morbench.errors import ConfigError
from morbench.metrics import _student_t_central, paired_t_interval, t_interval

__all__ = [
    "EQUIVALENCE_MARGIN",
    "README_END",
    "README_START",
    "Comparison",
    "compare",
    "equivalence_verdict",
    "findings_command",
    "greater_verdict",
    "render_findings",
    "study_command",
    "write_findings",
]

COLLAPSED_UNIQUENESS = 0.01  # fewer distinct valid samples than this fraction at u: a collapsed policy
EQUIVALENCE_MARGIN = 0.01  # average reward on [0, 1] rewards: "about equal" means within one point
README_START = "<!-- morbench:findings:start -->"
README_END = "<!-- morbench:findings:end -->"
HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive at this power"
METHOD_ORDER = ("iterative_rs", "rewarded_soups", "morlhf", "rewards_in_context", "best_of_n", "prior")
NO_RESULTS = (
    "No study results are committed yet: `morbench findings` fills this in from the committed "
    "`results/studies/<name>/study.json` files once the studies have run."
)
WIDTH = 115  # prose lines are wrapped like the rest of the docs


def _wrap(text: str) -> str:
    import textwrap

    return textwrap.fill(text, WIDTH, break_long_words=False, break_on_hyphens=False)


# -- statistics ------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Comparison:
    """A seed-paired comparison ``a - b``: mean difference, its 95% t-interval, t, two-sided p, pairs."""

    label: str
    mean: float
    low: float
    high: float
    t: float
    p: float
    n: int


def compare(label: str, a: dict[int, float], b: dict[int, float]) -> Comparison:
    """``a - b`` over the seeds both have a finite value for (paired by seed)."""
    seeds = sorted(s for s in set(a) & set(b) if _finite(a[s]) and _finite(b[s]))
    x = [a[s] for s in seeds]
    y = [b[s] for s in seeds]
    mean, low, high = paired_t_interval(x, y) if seeds else (float("nan"),) * 3
    t, p = float("nan"), float("nan")
    if len(seeds) >= 2:
        d = np.asarray(x) - np.asarray(y)
        sd = float(d.std(ddof=1))
        if sd > 0:
            t = float(d.mean() / (sd / math.sqrt(d.size)))
            p = 1.0 - _student_t_central(abs(t), d.size - 1)
        elif d.mean() != 0:
            t, p = math.copysign(math.inf, float(d.mean())), 0.0
    return Comparison(label, mean, low, high, t, p, len(seeds))


class Verdict(NamedTuple):
    """One claim's verdict and the seed-paired comparisons it rests on (the summary tables show them)."""

    claim: str
    verdict: str
    evidence: tuple[Comparison, ...] = ()
    decoding: str = ""  # the decoding the claim was tested at (a key of the study's ``decodings``)


def _evidence(comparisons: Sequence[Comparison]) -> str:
    return "; ".join(f"{c.label} {_num(c.mean)} [{_num(c.low)}, {_num(c.high)}]" for c in comparisons)


def greater_verdict(c: Comparison) -> str:
    """Verdict on ``a > b`` from the paired comparison ``a - b``."""
    if c.n < 2 or not (_finite(c.low) and _finite(c.high)):
        return INCONCLUSIVE
    if c.low > 0:
        return HOLDS
    if c.high < 0 or (c.low == 0 and c.high == 0):
        return FAILS
    return INCONCLUSIVE


def equivalence_verdict(c: Comparison, margin: float = EQUIVALENCE_MARGIN) -> str:
    """Verdict on ``a ~ b`` (within ``margin``) from the paired comparison ``a - b``."""
    if c.n < 2 or not (_finite(c.low) and _finite(c.high)):
        return INCONCLUSIVE
    if -margin <= c.low and c.high <= margin:
        return HOLDS
    if c.low > margin or c.high < -margin:
        return FAILS
    return INCONCLUSIVE


def all_of(verdicts: Sequence[str]) -> str:
    """A conjunction of claims: holds if all hold, does not hold if one fails, else inconclusive."""
    if verdicts and all(v == HOLDS for v in verdicts):
        return HOLDS
    if any(v == FAILS for v in verdicts):
        return FAILS
    return INCONCLUSIVE


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# -- reading a study -------------------------------------------------------------------------------------------
class StudyResults:
    """Lookups into one study.json: values per seed of a (row, decoding, metric), the compute a row used."""

    def __init__(self, payload: dict[str, Any]) -> None:
        self.payload = payload
        self.name: str = payload["study"]
        self.rows = {row["label"]: row for row in payload["rows"]}
        self.records: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for record in payload["records"]:
            self.records[(record["row"], record["decoding"])].append(record)
        self.decodings: list[str] = list(payload["decodings"])

    @property
    def headline(self) -> str:
        return self.decodings[0]

    def values(self, row: str, metric: str, decoding: str) -> dict[int, float]:
        out = {}
        for record in self.records.get((row, decoding), []):
            value = _metric(record["metrics"], metric)
            if _finite(value):
                out[int(record["seed"])] = float(value)
        return out

    def compute(self, row: str) -> dict[str, Any]:
        """Mean over seeds of the row's sampled tokens, gradient steps, PPO iterations and iterations per trained
        policy."""
        records = self.records.get((row, "protocol"), [])
        tokens = [r["compute"].get("sampled_tokens") for r in records]
        iterations = [r["compute"].get("ppo_iterations") for r in records]
        steps = [r["compute"].get("gradient_steps") for r in records]
        per_policy = []
        for r in records:
            for key in ("iterations_per_expert", "iterations_per_preference", "iterations_per_policy"):
                value = r["compute"].get(key)
                if isinstance(value, dict) and value:
                    per_policy.append(float(np.mean([v for v in value.values() if _finite(v)])))
        return {
            "sampled_tokens": _mean([t for t in tokens if _finite(t)]),
            "ppo_iterations": _mean([t for t in iterations if _finite(t)]),
            "gradient_steps": _mean([t for t in steps if _finite(t)]),
            "iterations_per_policy": _mean(per_policy),
        }

    def decoding_label(self, decoding: str) -> str:
        temperatures = {r["temperature"] for (_, d), rs in self.records.items() if d == decoding for r in rs}
        temperature = temperatures.pop() if len(temperatures) == 1 else None
        if decoding == "protocol":
            return f"protocol decoding (temperature {temperature:g})" if temperature is not None else "protocol"
        return f"temperature {decoding[1:]} (the paper's decoding; study-only, not ranked)"


def _metric(metrics: dict[str, Any], name: str) -> Any:
    """A record's metric. A record collected before records stored ``cv_samples`` has it as the inverse of its
    ``icv_samples`` where that is finite and positive (an infinite ICV was stored as null then: such records were
    re-scored)."""
    value = metrics.get(name)
    if name == "cv_samples" and value is None:
        icv = metrics.get("icv_samples")
        return 1.0 / icv if isinstance(icv, (int, float)) and _finite(icv) and icv > 0 else None
    return value


def collapsed_seeds(study: StudyResults, row: str, decoding: str) -> list[int]:
    """The seeds whose policy collapsed: fewer than :data:`COLLAPSED_UNIQUENESS` of the valid samples at the
    uniform preference are distinct (one or a few sequences, over and over)."""
    uniqueness = study.values(row, "uniqueness", decoding)
    return sorted(seed for seed, value in uniqueness.items() if value < COLLAPSED_UNIQUENESS)


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


# -- formatting ------------------------------------------------------------------------------------------------
def _num(value: float, digits: int = 3) -> str:
    if not _finite(value):
        return "n/a"
    return f"{value:.{digits}f}"


def _interval(values: dict[int, float], digits: int = 3) -> str:
    if not values:
        return "n/a"
    x = list(values.values())
    low, high = t_interval(x)
    mean = float(np.mean(x))
    if not (_finite(low) and _finite(high)):
        return f"{_num(mean, digits)} (n = {len(x)})"
    return f"{_num(mean, digits)} [{_num(low, digits)}, {_num(high, digits)}]"


def _count(value: float) -> str:
    return f"{value:,.0f}" if _finite(value) else "n/a"


def _p(value: float) -> str:
    if not _finite(value):
        return "n/a"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _comparison_table(comparisons: Sequence[tuple[Comparison, str]], digits: int = 3) -> str:
    rows = [
        [
            c.label,
            f"{_num(c.mean, digits)} [{_num(c.low, digits)}, {_num(c.high, digits)}]",
            _num(c.t, 2),
            _p(c.p),
            str(c.n),
            verdict,
        ]
        for c, verdict in comparisons
    ]
    return _table(["paired by seed", "mean difference [95% CI]", "t", "p (two-sided)", "seeds", "verdict"], rows)


def _row_table(study: StudyResults, labels: Sequence[str], decoding: str, first: str = "row") -> str:
    rows = []
    for label in labels:
        compute = study.compute(label)
        collapsed = collapsed_seeds(study, label, decoding)
        flag = f" (collapsed: seed{'s' if len(collapsed) > 1 else ''} {', '.join(map(str, collapsed))})"
        rows.append(
            [
                f"`{label}`" + (flag if collapsed else ""),
                _interval(study.values(label, "average_reward", decoding)),
                _interval(study.values(label, "cv_samples", decoding)),
                _interval(study.values(label, "uniqueness", decoding)),
                _interval(study.values(label, "kl_to_prior", decoding), 2),
                _count(compute["sampled_tokens"]),
                _count(compute["gradient_steps"]),
                _num(compute["iterations_per_policy"], 1),
                str(len(study.values(label, "average_reward", decoding))),
            ]
        )
    header = [
        first,
        "average reward [95% CI]",
        "CV (samples) = 1 / ICV [95% CI]",
        "uniqueness at u [95% CI]",
        "KL to prior [95% CI]",
        "sampled tokens",
        "gradient steps",
        "PPO iterations / policy",
        "seeds",
    ]
    return _table(header, rows)


# -- the claims ------------------------------------------------------------------------------------------------
def _ranked(labels: Sequence[str], method_of: dict[str, str]) -> list[str]:
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    return sorted(labels, key=lambda label: (order.get(method_of[label], 99), label))


def methods_section(study: StudyResults) -> tuple[list[str], list[Verdict]]:
    """Claims 1 and 2 (average reward, ICV) per compute convention and decoding; returns (lines, verdicts)."""
    lines: list[str] = []
    verdicts: list[Verdict] = []
    method_of = {label: row["method"] for label, row in study.rows.items()}
    for decoding in study.decodings:
        for convention in ("per_expert", "total"):
            labels = [
                label
                for label, row in study.rows.items()
                if row["tags"].get("group") == "methods" and row["convention"] == convention
            ]
            if not labels or not any(study.values(label, "average_reward", decoding) for label in labels):
                continue
            by_method = {method_of[label]: label for label in labels}
            where = f"{study.decoding_label(decoding)}, `{convention}` compute convention"
            lines += [f"#### {where}", "", _row_table(study, _ranked(labels, method_of), decoding, "method"), ""]
            irs, rs, morlhf = (by_method.get(m) for m in ("iterative_rs", "rewarded_soups", "morlhf"))
            if not (irs and rs and morlhf):
                continue
            names = {irs: "IterativeRS", rs: "RS", morlhf: "MORLHF"}
            pairs = ((irs, rs), (rs, morlhf), (irs, morlhf))
            reward = [_versus(study, names, a, b, "average_reward", decoding) for a, b in pairs]
            reward_verdicts = [greater_verdict(c) for c in reward]
            claim1 = all_of(reward_verdicts[:2])
            # "higher ICV" is tested as "lower CV": the CV stays finite (0) for a collapsed policy
            icv = [_versus(study, names, b, irs, "cv_samples", decoding, " (CV)") for b in (rs, morlhf)]
            icv_verdicts = [greater_verdict(c) for c in icv]
            claim2 = all_of(icv_verdicts)
            lines += [
                "Claim 1, IterativeRS > RS > MORLHF in average reward:",
                "",
                _comparison_table(list(zip(reward, reward_verdicts, strict=True))),
                "",
                _verdict_line(where, "IterativeRS > RS > MORLHF", claim1),
                "",
                "Claim 2, IterativeRS has the lowest variability (highest ICV over samples) of the three, tested as "
                "the lowest coefficient of variation (CV = 1 / ICV, finite where the ICV is not: a CV difference "
                "above 0 favours IterativeRS):",
                "",
                _comparison_table(list(zip(icv, icv_verdicts, strict=True))),
                "",
                _verdict_line(where, "IterativeRS has a higher ICV than RS and MORLHF", claim2),
                "",
            ]
            verdicts += [
                Verdict(f"IterativeRS > RS > MORLHF in average reward ({where})", claim1, tuple(reward), decoding),
                Verdict(f"IterativeRS has a higher ICV than RS and MORLHF ({where})", claim2, tuple(icv), decoding),
            ]
    return lines, verdicts


def _verdict_line(where: str, claim: str, verdict: str) -> str:
    """The bold line under a claim's table: ``**Verdict (<where>), <claim>: <verdict>.**``."""
    return f"**Verdict ({where}), {claim}: {verdict}.**"


def _versus(
    study: StudyResults, names: dict[str, str], a: str, b: str, metric: str, decoding: str, suffix: str = ""
) -> Comparison:
    """``compare`` of rows ``a`` and ``b`` on ``metric``, labelled with the methods' display names."""
    return compare(
        f"{names[a]} - {names[b]}{suffix}", study.values(a, metric, decoding), study.values(b, metric, decoding)
    )


def m_trend(reward_by_m: dict[int, dict[int, float]]) -> Comparison:
    """The seed-paired trend of average reward in m: per seed, the least-squares slope on ``log2 m`` over every m
    that seed has a finite value for (at least three), compared with 0 like a paired difference."""
    slopes: dict[int, float] = {}
    for seed in sorted({s for values in reward_by_m.values() for s in values}):
        points = [(math.log2(m), values[seed]) for m, values in reward_by_m.items() if _finite(values.get(seed))]
        if len(points) >= 3:
            x, y = np.asarray(points, dtype=float).T
            slopes[seed] = float(np.polyfit(x, y, 1)[0])
    return compare("slope per doubling of m", slopes, dict.fromkeys(slopes, 0.0))


def trend_verdict(c: Comparison) -> str:
    """``falls with m``, ``rises with m`` or inconclusive, from the slope comparison of :func:`m_trend`."""
    if c.n >= 2 and _finite(c.high) and c.high < 0:
        return "falls with m"
    if c.n >= 2 and _finite(c.low) and c.low > 0:
        return "rises with m"
    return INCONCLUSIVE


def m_sweep_section(study: StudyResults) -> tuple[list[str], list[Verdict]]:
    """Claims 3 and 4 (an intermediate optimal m; m = 1 ~ MORLHF, m = T = RS) and the subsampling rows."""
    lines: list[str] = []
    verdicts: list[Verdict] = []
    sweep = sorted(
        (label for label, row in study.rows.items() if row["tags"].get("group") == "m-sweep"),
        key=lambda label: study.rows[label]["tags"]["m"],
    )
    if len(sweep) < 3:
        return lines, verdicts
    big_t = study.rows[sweep[0]]["tags"]["T"]
    references = {
        study.rows[label]["method"]: label
        for label, row in study.rows.items()
        if row["tags"].get("group") == "references"
    }
    subsets = [label for label, row in study.rows.items() if row["tags"].get("group") == "subsampling"]
    for decoding in study.decodings:
        if not any(study.values(label, "average_reward", decoding) for label in sweep):
            continue
        where = study.decoding_label(decoding)
        reward = {label: study.values(label, "average_reward", decoding) for label in sweep}
        first, last = sweep[0], sweep[-1]
        interior = [label for label in sweep[1:-1] if reward[label]]
        lines += [
            f"#### {where}: IterativeRS over the merge period m (T = {big_t} iterations per expert)",
            "",
            _row_table(study, [*sweep, *references.values()], decoding, "m (or reference)"),
            "",
        ]
        if interior and reward[first] and reward[last]:
            best = max(interior, key=lambda label: float(np.mean(list(reward[label].values()))))
            better_end = max((first, last), key=lambda label: float(np.mean(list(reward[label].values()))))
            comparisons = [
                compare(f"best interior `{best}` - `{first}`", reward[best], reward[first]),
                compare(f"best interior `{best}` - `{last}`", reward[best], reward[last]),
                compare(f"better endpoint `{better_end}` - best interior `{best}`", reward[better_end], reward[best]),
            ]
            beats = [greater_verdict(c) for c in comparisons[:2]]
            if all(v == HOLDS for v in beats):
                claim3 = HOLDS
            elif greater_verdict(comparisons[2]) == HOLDS:
                claim3 = FAILS
            else:
                claim3 = INCONCLUSIVE
            lines += [
                "Claim 3, an intermediate m is optimal (the best interior m is chosen on these seeds):",
                "",
                _comparison_table(list(zip(comparisons, [*beats, greater_verdict(comparisons[2])], strict=True))),
                "",
                _verdict_line(where, "an intermediate m is optimal", claim3),
                "",
            ]
            verdicts.append(Verdict(f"an intermediate m is optimal ({where})", claim3, tuple(comparisons), decoding))
        trend = m_trend({study.rows[label]["tags"]["m"]: reward[label] for label in sweep})
        if trend.n >= 2:
            lines += [
                _wrap(
                    "Trend in m (descriptive; no claim of the paper): for each seed the least-squares slope of "
                    "average reward on log2 m over every m of the sweep, then its mean over seeds; reward falls (or "
                    "rises) with m when the interval lies below (above) 0:"
                ),
                "",
                _comparison_table([(trend, trend_verdict(trend))], digits=4),
                "",
            ]
        special = []
        if "morlhf" in references:
            special.append(
                compare(
                    f"`{first}` - MORLHF", reward[first], study.values(references["morlhf"], "average_reward", decoding)
                )
            )
        if "rewarded_soups" in references:
            special.append(
                compare(
                    f"`{last}` - RS",
                    reward[last],
                    study.values(references["rewarded_soups"], "average_reward", decoding),
                )
            )
        if special:
            special_verdicts = [equivalence_verdict(c) for c in special]
            lines += [
                f"Claim 4, the endpoints are the baselines: m = 1 ~ MORLHF and m = T = RS (equivalent within "
                f"+/- {EQUIVALENCE_MARGIN} average reward):",
                "",
                _comparison_table(list(zip(special, special_verdicts, strict=True))),
                "",
            ]
            for comparison, verdict in zip(special, special_verdicts, strict=True):
                claim = comparison.label.replace(" - ", " ~ ")
                lines += [_verdict_line(where, claim, verdict), ""]
                verdicts.append(Verdict(f"{claim} ({where})", verdict, (comparison,), decoding))
        if subsets:
            reference = next(
                (label for label in sweep if label in {f"m={study.rows[s]['tags']['m']}" for s in subsets}), None
            )
            rows = [
                compare(
                    f"`{label}` - `{reference}` (all objectives)",
                    study.values(label, "average_reward", decoding),
                    study.values(reference, "average_reward", decoding),
                )
                for label in subsets
                if reference is not None
            ]
            lines += [
                "Objective subsampling (each round trains a uniformly drawn subset of M of the K experts and merges "
                "those; descriptive, no claim of the paper):",
                "",
                _row_table(study, subsets, decoding, "subset"),
                "",
            ]
            if rows:
                lines += [_comparison_table([(c, greater_verdict(c)) for c in rows]), ""]
    return lines, verdicts


def reward_gap_at_equal_kl(a: Sequence[tuple[float, float]], b: Sequence[tuple[float, float]]) -> float:
    """Average reward of A minus B at equal KL to the prior, from each method's (KL, reward) points of one seed.

    Every point of either method whose KL lies inside the other method's KL range is compared with the other's
    reward there, interpolated linearly in log KL between its two neighbouring points (never extrapolated); the
    result is the mean of those A - B differences (antisymmetric: swapping A and B negates it), or NaN when the two
    ranges do not overlap. Points with a non-finite reward or a KL that is not finite and positive are left out.
    """

    def curve(points: Sequence[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
        kept = np.asarray(sorted((math.log(k), r) for k, r in points if _finite(k) and k > 0 and _finite(r)))
        return (kept[:, 0], kept[:, 1]) if kept.size else (np.empty(0), np.empty(0))

    (xa, ya), (xb, yb) = curve(a), curve(b)
    if not (xa.size and xb.size):
        return float("nan")
    gaps = [ya[i] - np.interp(x, xb, yb) for i, x in enumerate(xa) if xb[0] <= x <= xb[-1]]
    gaps += [np.interp(x, xa, ya) - yb[i] for i, x in enumerate(xb) if xa[0] <= x <= xa[-1]]
    return float(np.mean(gaps)) if gaps else float("nan")


def _equal_kl_comparison(
    study: StudyResults, names: dict[str, str], a: list[str], b: list[str], decoding: str
) -> Comparison:
    """Seed-paired :func:`reward_gap_at_equal_kl` of the frontier rows ``a`` and ``b`` (one per KL coefficient)."""

    def points(labels: list[str], seed: int) -> list[tuple[float, float]]:
        out = []
        for label in labels:
            reward = study.values(label, "average_reward", decoding).get(seed)
            kl = study.values(label, "kl_to_prior", decoding).get(seed)
            if reward is not None and kl is not None:
                out.append((kl, reward))
        return out

    seeds = sorted({s for label in [*a, *b] for s in study.values(label, "average_reward", decoding)})
    gaps = {seed: reward_gap_at_equal_kl(points(a, seed), points(b, seed)) for seed in seeds}
    method_a, method_b = (study.rows[labels[0]]["method"] for labels in (a, b))
    return compare(f"{names[method_a]} - {names[method_b]} at equal KL", gaps, dict.fromkeys(gaps, 0.0))


def frontier_section(study: StudyResults) -> tuple[list[str], list[Verdict]]:
    """Average reward against KL to the prior for every method and KL coefficient, and claim 1 at equal KL."""
    labels = [label for label, row in study.rows.items() if row["tags"].get("group") == "frontier"]
    lines: list[str] = []
    verdicts: list[Verdict] = []
    curves: dict[str, list[str]] = defaultdict(list)  # PPO method -> its rows, one per KL coefficient
    for label in labels:
        if study.rows[label]["tags"].get("kl") is not None:
            curves[study.rows[label]["method"]].append(label)
    names = {"iterative_rs": "IterativeRS", "rewarded_soups": "RS", "morlhf": "MORLHF"}
    for decoding in study.decodings:
        if not any(study.values(label, "average_reward", decoding) for label in labels):
            continue
        points = []
        for label in labels:
            reward = study.values(label, "average_reward", decoding)
            kl = study.values(label, "kl_to_prior", decoding)
            if reward:
                points.append((label, float(np.mean(list(reward.values()))), _mean(list(kl.values()))))
        front = {
            label
            for label, r, k in points
            if _finite(k) and not any(r2 >= r and k2 <= k and (r2, k2) != (r, k) for _, r2, k2 in points if _finite(k2))
        }
        lines += [
            f"#### {study.decoding_label(decoding)}: average reward against KL to the prior",
            "",
            _row_table(study, labels, decoding, "method / KL coefficient"),
            "",
            "Non-dominated (higher reward at no more KL, seed means): "
            + (", ".join(f"`{label}`" for label in labels if label in front) or "none"),
            "",
        ]
        if not all(curves.get(method) for method in names):
            continue
        pairs = (("iterative_rs", "rewarded_soups"), ("rewarded_soups", "morlhf"), ("iterative_rs", "morlhf"))
        gaps = [_equal_kl_comparison(study, names, curves[a], curves[b], decoding) for a, b in pairs]
        gap_verdicts = [greater_verdict(c) for c in gaps]
        claim = all_of(gap_verdicts[:2])
        where = study.decoding_label(decoding)
        lines += [
            _wrap(
                "Claim 1 at equal KL to the prior (a method that wins reward by drifting further from the prior is "
                "not better): per seed, each point of one method whose KL lies inside the range of KL the other "
                "method spans over its KL coefficients is compared with the other's reward at that KL, interpolated "
                "linearly in log KL between its neighbouring points; the seed's value is the mean of those "
                "differences (a seed whose two ranges do not overlap drops out):"
            ),
            "",
            _comparison_table(list(zip(gaps, gap_verdicts, strict=True))),
            "",
            _verdict_line(where, "IterativeRS > RS > MORLHF in average reward at equal KL to the prior", claim),
            "",
        ]
        verdicts.append(
            Verdict(
                f"IterativeRS > RS > MORLHF in average reward at equal KL to the prior ({where})",
                claim,
                tuple(gaps),
                decoding,
            )
        )
    return lines, verdicts


SECTIONS = {"paper": methods_section, "m-sweep": m_sweep_section, "frontier": frontier_section}


def _kind(payload: dict[str, Any]) -> str:
    name = payload["study"]
    for kind in ("m-sweep", "frontier", "paper"):
        if name.startswith(kind):
            return kind
    raise ConfigError(f"study {name!r}: no analysis is defined for it")


def study_report(payload: dict[str, Any], plots: dict[str, str] | None = None) -> tuple[list[str], list[Verdict]]:
    """The markdown lines and the verdicts (claim, verdict, evidence, decoding) of one study."""
    study = StudyResults(payload)
    lines, verdicts = SECTIONS[_kind(payload)](study)
    head = [
        f"### `{payload['study']}`: {payload['description']}",
        "",
        f"{len({r['seed'] for r in payload['records']})} seed(s); "
        + (
            "complete."
            if payload["complete"]
            else f"**incomplete: {_progress(payload)}**, the tables cover the finished ones and its verdicts are "
            f"provisional. {_remaining(payload)}"
        ),
        "Intervals: 95% Student-t over seeds; comparisons paired by seed. Compute per row: mean over seeds of the "
        "sampled tokens (the budget the compute conventions match), of the optimizer steps (PPO minibatches, or "
        "Rewards-in-Context's supervised batches: not matched) and of the PPO iterations per trained policy "
        "(expert or preference).",
        "",
    ]
    images = [f"![{caption}]({path})" for caption, path in (plots or {}).items()]
    return head + lines + cost_section(study) + ([*images, ""] if images else []), verdicts


def _progress(payload: dict[str, Any]) -> str:
    """``40 of 60 (row, seed) runs finished``: a run is finished when its protocol record is in."""
    finished = len({(r["row"], r["seed"]) for r in payload["records"] if r["decoding"] == "protocol"})
    planned = sum(len(row.get("seeds", ())) for row in payload["rows"])
    return f"{finished} of {planned} (row, seed) runs finished"


def _remaining(payload: dict[str, Any]) -> str:
    """How long the runs a study has not finished should take on two workers (an estimate; smoke: nothing)."""
    from morbench.study import remaining_core_hours

    if payload.get("scale") == "smoke":
        return ""
    hours = remaining_core_hours(payload) / 2
    return f"The rest should take about {hours:.1f} h on 2 cores (estimate: docs/studies.md, section Cost)."


def _machine(record: dict[str, Any]) -> str:
    hardware = record.get("hardware") or {}
    if not hardware.get("cpu_count"):
        return "a machine its record does not name (collected before records named it)"
    threads = hardware.get("torch_threads")
    accelerator = hardware.get("accelerator")
    return (
        f"{_cpu(hardware)}, {hardware['cpu_count']} cores, {threads} torch thread"
        f"{'' if threads == 1 else 's'} per run, device {hardware.get('device')}"
        + (f" ({accelerator})" if accelerator not in (None, "none") else "")
    )


def _cpu(hardware: dict[str, Any]) -> str:
    """The CPU a record names: its model and kernels' instruction set (since 2026-12-05), else the architecture."""
    from morbench.runs import cpus_named

    cpus = cpus_named(hardware)
    if not cpus:  # a record made before runs named their CPU model (they are bit-exact on one model only)
        return f"{hardware.get('processor')} (CPU model not recorded)"
    return " then ".join(cpus)


@dataclasses.dataclass
class MeasuredCost:
    """Wall-clock seconds a study's finished runs recorded: per row (means over its seeds) and in total."""

    rows: list[tuple[str, int, float, float]]  # (row, seeds, training s / seed, evaluation s / seed)
    runs: int  # each run once (rows that define the same run share it)
    training_hours: float
    evaluation_hours: float
    machines: list[str]

    @property
    def summary(self) -> str:
        return (
            f"{self.runs} runs: {self.training_hours:.1f} h of training and {self.evaluation_hours:.1f} h of "
            f"evaluation, {self.training_hours + self.evaluation_hours:.1f} run-hours in all (about half that in wall "
            f"time on two workers), on {'; '.join(self.machines)}"
        )


def measured_cost(study: StudyResults) -> MeasuredCost:
    """Training seconds once per run (its protocol record), evaluation seconds once per (run, decoding)."""
    rows, machines = [], set()
    training: dict[str, float] = {}  # run identity -> training seconds
    evaluation: dict[tuple[str, str], float] = {}  # (run identity, decoding) -> evaluation seconds
    for label in study.rows:
        by_seed: dict[int, list[float]] = {}  # seed -> [training, evaluation summed over the decodings]
        for decoding in study.decodings:
            for record in study.records.get((label, decoding), []):
                compute = record["compute"]
                run = record.get("identity") or f"{label}/{record['seed']}"  # older records name no identity
                seconds = by_seed.setdefault(int(record["seed"]), [0.0, 0.0])
                if decoding == "protocol":
                    seconds[0] = training[run] = float(compute.get("wall_seconds") or 0.0)
                evaluation[(run, decoding)] = float(compute.get("evaluation_seconds") or 0.0)
                seconds[1] += evaluation[(run, decoding)]
                machines.add(_machine(record))
        if by_seed:
            means = np.mean(list(by_seed.values()), axis=0)
            rows.append((label, len(by_seed), float(means[0]), float(means[1])))
    return MeasuredCost(
        rows, len(training), sum(training.values()) / 3600, sum(evaluation.values()) / 3600, sorted(machines)
    )


def cost_section(study: StudyResults) -> list[str]:
    """The markdown of :func:`measured_cost` (nothing when no run has finished)."""
    cost = measured_cost(study)
    if not cost.rows:
        return []
    return [
        "#### Measured cost",
        "",
        _wrap(
            f"Wall-clock seconds each finished run recorded; whatever else ran on the machine at the time is in "
            f"them. Training once per run, evaluation summed over the decodings ({', '.join(study.decodings)}). "
            f"{'In all' if study.payload['complete'] else 'So far'} {cost.summary}."
        ),
        "",
        _table(
            ["row", "seeds", "training s / seed", "evaluation s / seed"],
            [[f"`{label}`", str(seeds), f"{train:,.0f}", f"{ev:,.0f}"] for label, seeds, train, ev in cost.rows],
        ),
        "",
    ]


# -- plots -----------------------------------------------------------------------------------------------------
def _savefig(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def plot_study(payload: dict[str, Any], folder: Path, link_base: str = "") -> dict[str, str]:
    """Every plot of a study (m-sweep curve, reward-KL frontier, fronts per method, learning curves) as PNGs.

    Returns ``{caption: link}`` (links relative to the page, ``link_base`` + file name).
    """
    from morbench.plots import _pyplot

    plt = _pyplot()
    study = StudyResults(payload)
    kind = _kind(payload)
    decoding = study.headline
    made: dict[str, str] = {}
    name = payload["study"]

    def keep(fig: Any, stem: str, caption: str) -> None:
        _savefig(fig, folder / f"{name}-{stem}.png")
        made[caption] = f"{link_base}{name}-{stem}.png"

    if kind == "m-sweep":
        sweep = sorted(
            (lab for lab, row in study.rows.items() if row["tags"].get("group") == "m-sweep"),
            key=lambda lab: study.rows[lab]["tags"]["m"],
        )
        fig, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
        xs, means, lows, highs = [], [], [], []
        for label in sweep:
            values = list(study.values(label, "average_reward", decoding).values())
            if not values:
                continue
            low, high = t_interval(values)
            xs.append(study.rows[label]["tags"]["m"])
            means.append(float(np.mean(values)))
            lows.append(low if _finite(low) else means[-1])
            highs.append(high if _finite(high) else means[-1])
        if xs:
            ax.errorbar(
                xs,
                means,
                yerr=[np.subtract(means, lows), np.subtract(highs, means)],
                marker="o",
                capsize=3,
                label="IterativeRS (95% CI over seeds)",
            )
            for method, style in (("morlhf", "--"), ("rewarded_soups", ":")):
                label = next(
                    (
                        lab
                        for lab, row in study.rows.items()
                        if row["tags"].get("group") == "references" and row["method"] == method
                    ),
                    None,
                )
                values = list(study.values(label, "average_reward", decoding).values()) if label else []
                if values:
                    ax.axhline(float(np.mean(values)), linestyle=style, color="gray", label=f"{method} (mean)")
            ax.set_xscale("log", base=2)
            ax.set_xticks(xs, [str(x) if x != study.rows[sweep[0]]["tags"]["T"] else f"T={x}" for x in xs])
            ax.set_xlabel("merge period m (PPO iterations per expert between merges)")
            ax.set_ylabel("average reward (uniform preference)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
            ax.set_title(f"{payload['env_id']}: {_short_decoding(decoding)}", fontsize=9)
            keep(fig, "m-sweep", "IterativeRS average reward over the merge period m")
        else:
            plt.close(fig)
    if kind == "frontier":  # one panel per decoding, the headline first: the verdicts are given at both
        fig, axes = plt.subplots(
            1, len(study.decodings), figsize=(6.4 * len(study.decodings), 4.4), squeeze=False, sharey=True,
            layout="constrained",
        )  # fmt: skip
        for ax, panel in zip(axes[0], study.decodings, strict=True):
            _frontier_panel(ax, study, panel)
            ax.set_title(f"{payload['env_id']}: {_short_decoding(panel)}", fontsize=9)
        axes[0][0].set_ylabel("average reward (uniform preference)")
        keep(fig, "frontier", "average reward against KL to the prior (95% CIs over seeds)")
    if kind == "paper":
        from morbench.plots import fronts_figure

        results = []
        for label, row in study.rows.items():
            if row["convention"] != "per_expert":
                continue
            for record in study.records.get((label, decoding), []):
                names = list(record["metrics"]["per_objective_mean"])
                results.append(
                    {
                        "method": row["method"],
                        "env": payload["env_id"],
                        "objective_names": names,
                        "per_preference": record["per_preference"],
                    }
                )
        if results:
            keep(fronts_figure(results), "fronts", "fronts per method (per_expert convention)")
        curves = _curves(study)
        if curves:
            fig, axes = plt.subplots(
                1, len(curves), figsize=(4.4 * len(curves), 3.8), squeeze=False, layout="constrained"
            )
            for ax, (method, lines) in zip(axes[0], sorted(curves.items()), strict=True):
                for policy, (its, scores) in sorted(lines.items()):
                    ax.plot(its, scores, lw=1.2, label=policy)
                ax.set_title(method, fontsize=9)
                ax.set_xlabel("PPO iteration of the policy")
                ax.set_ylabel("training score (mean over seeds)")
                ax.grid(alpha=0.3)
                ax.legend(fontsize=6)
            keep(fig, "learning-curves", "learning curves (per_expert convention, mean over seeds)")
    return made


def _frontier_panel(ax: Any, study: StudyResults, decoding: str) -> None:
    """Each method's rows as (KL to the prior, average reward) points with their 95% intervals over seeds."""
    by_method: dict[str, list[tuple[float, float, float, float, float]]] = defaultdict(list)
    for label, row in study.rows.items():
        reward = list(study.values(label, "average_reward", decoding).values())
        kl = list(study.values(label, "kl_to_prior", decoding).values())
        if not reward or not kl:
            continue
        r_low, r_high = t_interval(reward)
        k_low, k_high = t_interval(kl)
        r, k = float(np.mean(reward)), float(np.mean(kl))
        by_method[row["method"]].append(
            (
                k,
                r,
                r - (r_low if _finite(r_low) else r),
                (r_high if _finite(r_high) else r) - r,
                k - (k_low if _finite(k_low) else k),
            )
        )
    for method in sorted(by_method):
        points = sorted(by_method[method])
        ks, rs = [p[0] for p in points], [p[1] for p in points]
        ax.errorbar(
            ks,
            rs,
            yerr=[[p[2] for p in points], [p[3] for p in points]],
            xerr=[[p[4] for p in points], [p[4] for p in points]],
            marker="o",
            capsize=2,
            label=method,
        )
    ax.set_xlabel("KL to the prior (nats per sequence, uniform preference)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def _short_decoding(decoding: str) -> str:
    return "protocol decoding" if decoding == "protocol" else f"decoding temperature {decoding[1:]}"


def _curves(study: StudyResults) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
    """Per PPO method (per_expert rows): per trained policy, the mean over seeds of its score at each iteration."""
    out: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    for label, row in study.rows.items():
        if row["convention"] != "per_expert":
            continue
        by_policy: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
        for record in study.records.get((label, "protocol"), []):
            for policy, points in (record.get("curve") or {}).items():
                for iteration, score, _ in points:
                    if _finite(iteration) and _finite(score):
                        by_policy[policy][float(iteration)].append(float(score))
        if by_policy:
            out[row["method"]] = {
                policy: (sorted(points), [float(np.mean(points[i])) for i in sorted(points)])
                for policy, points in by_policy.items()
            }
    return out


# -- pages -----------------------------------------------------------------------------------------------------
def _verdict_rows(payload: dict[str, Any], verdicts: Sequence[Verdict]) -> list[list[str]]:
    """The summary rows of one study's verdicts; a verdict on an unfinished study, which its remaining seeds may still
    change, says which part it rests on."""
    note = "" if payload["complete"] else f" (provisional: {_progress(payload)})"
    return [[f"`{payload['study']}`", v.claim, f"**{v.verdict}**{note}", _evidence(v.evidence)] for v in verdicts]


def _summary(rows: Sequence[list[str]]) -> str:
    return _table(["study", "claim", "verdict", "paired by seed: mean difference [95% CI]"], rows)


def render_findings(payloads: Sequence[dict[str, Any]], plots: dict[str, dict[str, str]] | None = None) -> str:
    """``docs/findings.md`` from the study payloads (in the given order)."""
    lines = [
        "# Findings: the paper's claims at convergence",
        "",
        _wrap(
            "Generated by `morbench findings` from the committed `results/studies/<name>/study.json` files; do not "
            "edit by hand. Studies, scales, and how to run them: [studies.md](studies.md)."
        ),
        "",
    ]
    if not payloads:
        return "\n".join([*lines, _wrap(NO_RESULTS), ""])
    all_verdicts = []
    body = []
    for payload in payloads:
        section, verdicts = study_report(payload, (plots or {}).get(payload["study"]))
        body += section
        all_verdicts += _verdict_rows(payload, verdicts)
    lines += [
        "## Verdicts",
        "",
        f"Verdict rules: `A > B` holds when the 95% interval of the seed-paired difference lies above 0, does not "
        f"hold when it lies below 0 (or A and B are identical), and is inconclusive otherwise; `A ~ B` holds when "
        f"the interval lies inside +/- {EQUIVALENCE_MARGIN}. More seeds narrow an inconclusive interval.",
        "",
        _summary(all_verdicts) if all_verdicts else "No claim could be tested on the committed results.",
        "",
        "## Studies",
        "",
        *body,
    ]
    return "\n".join(lines).rstrip() + "\n"


def headline_verdicts(payload: dict[str, Any]) -> list[list[str]]:
    """The summary rows of one study's verdicts at its headline decoding, the decoding named once, not per claim."""
    study = StudyResults(payload)
    label = study.decoding_label(study.headline)
    _, verdicts = study_report(payload)
    kept = [v for v in verdicts if v.decoding == study.headline]
    return _verdict_rows(
        payload, [v._replace(claim=v.claim.replace(f" ({label})", "").replace(f"({label}, ", "(")) for v in kept]
    )


def render_readme_block(payloads: Sequence[dict[str, Any]]) -> str:
    """The README's headline block: the first paper-scale methods table (headline decoding, ``per_expert``), then
    every study's verdicts at its headline decoding."""
    paper = next((p for p in payloads if _kind(p) == "paper"), None)
    if paper is None:
        return f"{README_START}\n{_wrap(NO_RESULTS + ' See [docs/studies.md](docs/studies.md).')}\n{README_END}"
    study = StudyResults(paper)
    labels = [
        label
        for label, row in study.rows.items()
        if row["tags"].get("group") == "methods" and row["convention"] == "per_expert"
    ]
    method_of = {label: row["method"] for label, row in study.rows.items()}
    table = _row_table(study, _ranked(labels, method_of), study.headline, "method")
    text = (
        f"`{paper['study']}` ({paper['description']}); {study.decoding_label(study.headline)}, `per_expert` compute "
        "convention; 95% Student-t intervals over seeds. Verdicts, the `total` convention and the other decoding: "
        "[docs/findings.md](docs/findings.md)."
    )
    if not paper["complete"]:
        text += (
            f" **Partial: {_progress(paper)}** (the study runs in seed-major chunks; `morbench study "
            f"{paper['study']}` continues it): its verdicts are provisional. {_remaining(paper)}"
        )
    cost = measured_cost(study)
    if cost.runs:
        text += f" Measured cost{'' if paper['complete'] else ' so far'}: {cost.summary}."
    rows = [row for payload in payloads for row in headline_verdicts(payload)]
    verdicts = (
        ""
        if not rows
        else "\n\n"
        + _wrap(
            f"The paper's claims, {study.decoding_label(study.headline)} (verdict rules, the intervals behind each "
            "verdict and the other decoding: [docs/findings.md](docs/findings.md)):"
        )
        + f"\n\n{_summary(rows)}"
    )
    return f"{README_START}\n{_wrap(text)}\n\n{table}{verdicts}\n{README_END}"


def replace_block(text: str, block: str) -> str:
    """``text`` with the part between the README markers (inclusive) replaced by ``block``."""
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise ConfigError(
            f"README.md has no {README_START} ... {README_END} block; add the two marker lines where the "
            "headline table goes"
        )
    return text[:start] + block + text[end + len(README_END) :]


def load_payloads(root: Path, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The committed study.json files under ``root`` (``results/studies``) in :data:`morbench.study.STUDIES` order.

    A smoke study's results are refused: they are tests of the pipeline, not findings.
    """
    from morbench.study import STUDIES, read_study, study_names

    payloads = []
    for name in study_names(names) if names else STUDIES:
        path = root / name / "study.json"
        if not path.is_file():
            continue
        payload = read_study(path)
        if payload.get("scale") == "smoke":
            raise ConfigError(f"{path} holds smoke-scale results; findings are made from full studies only")
        payloads.append(payload)
    return payloads


def write_findings(
    root: str | Path = "results/studies",
    docs: str | Path = "docs",
    readme: str | Path | None = "README.md",
    names: Sequence[str] | None = None,
    plots: bool = True,
    check: bool = False,
) -> list[Path]:
    """Regenerate ``docs/findings.md``, its plots (``docs/images/findings/``) and the README block.

    ``check``: write nothing; raise :class:`ConfigError` naming the files that would change.
    """
    payloads = load_payloads(Path(root), names)
    docs = Path(docs)
    plot_links: dict[str, dict[str, str]] = {}
    written: list[Path] = []
    if plots and not check:
        for payload in payloads:
            plot_links[payload["study"]] = plot_study(payload, docs / "images" / "findings", "images/findings/")
    elif plots:
        for payload in payloads:  # the links the page names, without drawing
            plot_links[payload["study"]] = _plot_links(payload)
    outputs = {docs / "findings.md": render_findings(payloads, plot_links)}
    if readme is not None:
        path = Path(readme)
        outputs[path] = replace_block(path.read_text(), render_readme_block(payloads))
    stale = [path for path, text in outputs.items() if not path.is_file() or path.read_text() != text]
    if check:
        if stale:
            raise ConfigError(f"{[str(p) for p in stale]} differ from what `morbench findings` generates; run it")
        return []
    for path, text in outputs.items():
        if path in stale:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            written.append(path)
    return written


def _plot_links(payload: dict[str, Any]) -> dict[str, str]:
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        return plot_study(payload, Path(scratch), "images/findings/")


# -- commands --------------------------------------------------------------------------------------------------
def add_study_parsers(sub: Any) -> None:
    """``morbench study <name>`` and ``morbench findings``."""
    from morbench.cli import DEVICE_HELP, output_dir, positive_int
    from morbench.study import STUDIES

    study = sub.add_parser(
        "study",
        help="run (or continue) a study of the paper's claims; resumable, --max-hours for chunks",
        description="Studies: " + ", ".join(STUDIES) + " (docs/studies.md).",
    )
    study.add_argument("name", help=" | ".join(STUDIES))
    study.add_argument("--smoke", action="store_true", help="the seconds scale (Motifs-v0, one seed): a pipeline test")
    study.add_argument("--out", type=output_dir, default=None, help="default: results/studies/<name>[-smoke]")
    study.add_argument(
        "--max-hours",
        type=float,
        default=None,
        help="start no run that its estimate says would end after this many hours (docs/studies.md)",
    )
    study.add_argument("--executor", choices=("local", "ray"), default="local")
    study.add_argument("--workers", type=positive_int, default=None, help="local processes (default: min(2, cores))")
    study.add_argument("--ray-address", default=None)
    study.add_argument("--device", default="cpu", help=DEVICE_HELP)
    study.add_argument(
        "--report",
        action="store_true",
        help="run nothing: collect the finished runs into study.json and write <out>/findings.md and <out>/plots/",
    )
    study.add_argument(
        "--submit",
        action="store_true",
        help="run nothing: merge each row's verified leaderboard parts (every seed) into an entry of the board and "
        "verify it (then `morbench leaderboard build`); --force replaces entries of the same name",
    )
    study.add_argument("--force", action="store_true", help="with --submit: replace the entries of the same names")
    study.add_argument(
        "--bank-parts",
        action="store_true",
        help="also re-run the runs finished in another checkout that lack a verified leaderboard part; each must "
        "reproduce its committed records before its part is banked (paper studies; --max-hours applies)",
    )
    study.add_argument("--board", default=None, help="with --submit: the board folder (default: found from here)")
    study.add_argument("--quiet", action="store_true")
    findings = sub.add_parser(
        "findings", help="regenerate docs/findings.md and the README's headline block from results/studies/"
    )
    findings.add_argument("--root", default="results/studies", help="where the study.json files are")
    findings.add_argument("--docs", default="docs")
    findings.add_argument("--readme", default="README.md")
    findings.add_argument("--studies", nargs="+", default=None)
    findings.add_argument("--no-plots", action="store_true")
    findings.add_argument("--check", action="store_true", help="fail if the generated files are not up to date")
    for command in (study, findings):
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def study_report_files(payload: dict[str, Any], out: Path) -> Path:
    """``out/findings.md`` and ``out/plots/`` for one study (smoke studies included: never docs/)."""
    links = plot_study(payload, out / "plots", "plots/")
    lines, verdicts = study_report(payload, links)
    summary = _summary(_verdict_rows(payload, verdicts)) if verdicts else ""
    scale_note = (
        "**Smoke scale: a test of the pipeline, not a finding.**\n\n" if payload.get("scale") == "smoke" else ""
    )
    path = out / "findings.md"
    path.write_text(f"# Study `{payload['study']}`\n\n{scale_note}{summary}\n\n" + "\n".join(lines).rstrip() + "\n")
    return path


def study_command(args: argparse.Namespace) -> int:
    from morbench.study import collect_study, default_out, run_study

    out = Path(args.out or default_out(args.name, args.smoke))
    if args.max_hours is not None and not (math.isfinite(args.max_hours) and args.max_hours > 0):
        raise ConfigError(f"--max-hours {args.max_hours} must be a positive number of hours")
    failed = []
    if args.bank_parts and (args.submit or args.report):
        raise ConfigError("--bank-parts runs the runs whose parts are missing; --submit and --report run nothing")
    if args.submit:
        from morbench.study import submit_study

        if args.smoke:
            raise ConfigError("--submit: the smoke scale makes no leaderboard entries")
        outcomes = submit_study(args.name, out, board=args.board, force=args.force)
        for outcome in outcomes:
            print(
                f"{outcome['row']}: {outcome['status']}"
                + (f" ({outcome['how']}) {outcome['file']}" if "file" in outcome else "")
            )
        return 1 if any(o["status"] == "failed" for o in outcomes) else 0
    if args.report:
        payload = collect_study(args.name, out, smoke=args.smoke)
    else:
        result = run_study(
            args.name,
            out,
            smoke=args.smoke,
            executor=args.executor,
            workers=args.workers,
            ray_address=args.ray_address,
            max_hours=args.max_hours,
            progress=not args.quiet,
            device=args.device,
            bank_parts=args.bank_parts,
        )
        payload = result["study"]
        failed = [o for o in result["outcomes"] if o["status"] == "failed"]
        left = [o for o in result["outcomes"] if o["status"].startswith("not started")]
        if left:
            print(f"{len(left)} run(s) not started (--max-hours); the same command continues the study")
            too_long = [
                o["estimated_seconds"] / 3600 for o in left if o.get("estimated_seconds", 0) > args.max_hours * 3600
            ]
            if too_long:
                print(
                    f"{len(too_long)} of them are estimated to take longer than --max-hours {args.max_hours:g} "
                    f"itself: they start only in a chunk of at least {max(too_long):.2f} h"
                )
    if not payload["complete"] and payload.get("scale") != "smoke":
        print(_remaining(payload))
    path = study_report_files(payload, out)
    for failure in failed:
        print(f"FAILED {failure['job']}: {failure['error']}")
    print(f"{out / 'study.json'} ({len(payload['records'])} records; complete: {payload['complete']}); report: {path}")
    return 1 if failed else 0


def findings_command(args: argparse.Namespace) -> int:
    written = write_findings(
        args.root, args.docs, args.readme, names=args.studies, plots=not args.no_plots, check=args.check
    )
    if args.check:
        print("findings are up to date")
    else:
        print("wrote " + (", ".join(str(p) for p in written) if written else "nothing (up to date)"))
    return 0
