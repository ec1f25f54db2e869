"""How long the Summarize prior's summaries are, and what the ones cut off at the task's limit look like.

``python -m morbench.envs.summarize.length_study --max-length 192 --out study.json`` draws the prior samples of
the build report's protocol (``--samples-per-document`` per test paper, batches of 16, the seed of each batch
``preference_seed(seed, first index)``, temperature 1) with a raised limit. Sampling is the same token by token
whatever the limit, so the first 64 tokens of every sample are the build report's sample. ``--instruction``
measures another user turn (``{document}`` stands for the abstract) with the same seeds.

The JSON holds the fraction of samples that emitted ``<|im_end|>`` within each limit, the lengths of the
summaries that ended (tokens, words, sentences), the oracle's validity and invalid reasons at ``--task-limit``
(64, the task's) counted from the samples truncated there, and, for the samples that did not end within the
task's limit, what they look like (line breaks, bullet lists, word trigrams copied from the abstract, repeated
trigrams) and the oracle's and judge's rewards when scored at ``--max-length``. Sampling took 21 minutes at
``--max-length 192`` and 6 at 64 on one core of a shared 2-core machine (``studies/``); ``--documents`` and
``--policy tiny`` make a smoke test.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from morbench.buildkit import distribution_summary, environment_record, reason_counts

__all__ = ["main", "text_features"]

LIMITS = (32, 48, 64, 96, 128, 160, 192, 256)
_WORD = re.compile(r"[a-z0-9']+")
_LIST_ITEM = re.compile(r"(^|\n)\s*([-*\u2022]|\d+[.)])\s")


def text_features(text: str, source: str) -> dict[str, float]:
    """``multi_line`` (a line break inside the text), ``bullet_list`` (a line starting with -, *, a bullet or
    ``1.``), ``copied_trigrams`` (the fraction of the text's word trigrams that occur in ``source``) and
    ``repeated_trigrams`` (the fraction of its word trigrams that repeat an earlier one)."""
    words = _WORD.findall(text.lower())
    source_words = _WORD.findall(source.lower())
    trigrams = list(zip(words, words[1:], words[2:], strict=False))
    source_trigrams = set(zip(source_words, source_words[1:], source_words[2:], strict=False))
    return {
        "multi_line": float("\n" in text.strip()),
        "bullet_list": float(bool(_LIST_ITEM.search(text))),
        "copied_trigrams": sum(t in source_trigrams for t in trigrams) / len(trigrams) if trigrams else 0.0,
        "repeated_trigrams": 1 - len(set(trigrams)) / len(trigrams) if trigrams else 0.0,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    from morbench.envs.summarize.documents import INSTRUCTION

    parser = argparse.ArgumentParser(prog="python -m morbench.envs.summarize.length_study", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    parser.add_argument("--max-length", type=int, default=192, help="the raised limit (summary tokens)")
    parser.add_argument("--task-limit", type=int, default=64, help="the task's limit the samples are judged at")
    parser.add_argument("--instruction", default=INSTRUCTION, help="the user turn; {document} is the abstract")
    parser.add_argument("--samples-per-document", type=int, default=2)
    parser.add_argument("--documents", type=int, default=None, help="only the first N test papers")
    parser.add_argument("--policy", choices=("smollm2", "tiny"), default="smollm2")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(list(argv) if argv is not None else None)
    if not 2 <= args.task_limit <= args.max_length:
        parser.error(f"--task-limit must be in [2, --max-length={args.max_length}], got {args.task_limit}")
    if "{document}" not in args.instruction:
        parser.error("--instruction must contain {document} (where the abstract goes)")
    return args


def sample(args: argparse.Namespace) -> tuple[Any, list[Any], list[list[int]], list[bool], float]:
    """The env (test split, ``--max-length``), the sampled contexts, the generated ids (<|im_end|> excluded),
    whether each sample ended, and the sampling seconds."""
    import torch

    from morbench.envs.summarize.documents import PromptBuilder, load_documents
    from morbench.envs.summarize.env import REBUILD_COMMAND, SummarizeEnv
    from morbench.models import load_causal_lm
    from morbench.sampling import sample_for_task
    from morbench.seeding import preference_seed

    torch.set_num_threads(1)
    env = SummarizeEnv(split="test", policy=args.policy, max_length=args.max_length, cache_dir=args.cache_dir)
    builder = PromptBuilder(env.tokenizer, env.max_prompt_length, args.instruction)
    if builder.overhead != PromptBuilder(env.tokenizer, env.max_prompt_length).overhead:
        env.max_prompt_length += builder.overhead - PromptBuilder(env.tokenizer, env.max_prompt_length).overhead
        builder = PromptBuilder(env.tokenizer, env.max_prompt_length, args.instruction)  # every abstract as shown
    env.contexts = builder.contexts(load_documents(env.assets_dir / "documents.jsonl", "test"))
    model = load_causal_lm(env.prior_path, rebuild_command=REBUILD_COMMAND)
    contexts = [c for c in env.contexts[: args.documents] for _ in range(args.samples_per_document)]
    rows: list[list[int]] = []
    ended: list[bool] = []
    start = time.perf_counter()
    for first in range(0, len(contexts), args.batch_size):
        chunk = contexts[first : first + args.batch_size]
        generator = torch.Generator().manual_seed(preference_seed(args.seed, first))  # the build report's seeds
        generation = sample_for_task(model, env, list(chunk), generator, 1.0, 1.0)
        for tokens, mask in zip(generation.tokens.tolist(), generation.mask.tolist(), strict=True):
            ids = [t for t, m in zip(tokens, mask, strict=True) if m]
            ended.append(env.eos_token_id in ids)
            rows.append(ids[: ids.index(env.eos_token_id)] if env.eos_token_id in ids else ids)
        print(f"{len(rows)} / {len(contexts)} samples, {time.perf_counter() - start:.0f} s", flush=True)
    return env, contexts, rows, ended, time.perf_counter() - start


def task_env(env: Any, args: argparse.Namespace) -> Any:
    """The env at the task's limit (its oracle scores each sample as that limit leaves it)."""
    from morbench.envs.summarize.env import SummarizeEnv

    return SummarizeEnv(
        split="test",
        policy=args.policy,
        max_length=args.task_limit,
        max_prompt_length=env.max_prompt_length,
        cache_dir=args.cache_dir,
    )


def study(args: argparse.Namespace, argv: Sequence[str] | None = None) -> dict[str, Any]:
    from morbench.envs.summarize.build_evaluate import REASON_CLASS
    from morbench.envs.summarize.text import text_stats

    env, contexts, rows, ended_list, seconds = sample(args)
    ended = np.asarray(ended_list, dtype=bool)
    generated = np.array([len(r) for r in rows])  # tokens before <|im_end|> (all of them for a cut-off sample)
    limit = args.task_limit
    texts, _ = env.decode_token_ids(rows)
    at_limit, _ = env.decode_token_ids([r[:limit] for r in rows])  # each sample as the task's limit leaves it
    at_task = task_env(env, args).score(at_limit, contexts)
    oracle, judge = env.score(texts, contexts), env.judge_score(texts, contexts)
    within_task = ended & (generated < limit)
    stats = [text_stats(t) for t in texts]

    def lengths(mask: np.ndarray) -> dict[str, Any]:
        if not mask.any():
            return {"samples": 0}
        return {
            "samples": int(mask.sum()),
            "tokens": distribution_summary(generated[mask]),
            "words": distribution_summary([s.words for s, m in zip(stats, mask, strict=True) if m]),
            "sentences": distribution_summary([s.sentences for s, m in zip(stats, mask, strict=True) if m]),
        }

    def group(mask: np.ndarray) -> dict[str, Any]:
        features = [text_features(t, c.data.source) for t, c, m in zip(texts, contexts, mask, strict=True) if m]
        valid = oracle.valid & mask
        out: dict[str, Any] = {"samples": int(mask.sum()), "lengths_of_those_ended": lengths(mask & ended)}
        if features:
            out["features_mean"] = {k: float(np.mean([f[k] for f in features])) for k in features[0]}
        out[f"valid_at_{args.max_length}"] = int(valid.sum())
        if valid.any():
            out[f"mean_rewards_valid_at_{args.max_length}"] = oracle.rewards[valid].mean(axis=0).tolist()
            out[f"mean_judge_rewards_valid_at_{args.max_length}"] = judge.rewards[valid].mean(axis=0).tolist()
        return out

    return {
        "environment": environment_record(
            ("torch", "transformers", "morbench"),
            command=" ".join(["python -m morbench.envs.summarize.length_study", *(argv or [])]),
            torch_threads=1,
            seed=args.seed,
        ),
        "protocol": {
            "instruction": args.instruction,
            "max_length": args.max_length,
            "task_limit": limit,
            "max_prompt_length": env.max_prompt_length,
            "samples": len(rows),
            "samples_per_document": args.samples_per_document,
            "policy": args.policy,
            "temperature": 1.0,
            "sampling_seconds": seconds,
        },
        "ended_within": {
            str(n): float((ended & (generated < n)).mean())
            for n in sorted({*LIMITS, limit, args.max_length})
            if n <= args.max_length
        },
        "not_ended": float((~ended).mean()),
        "lengths_of_those_ended": lengths(ended),
        "at_task_limit": {
            "valid_fraction": float(at_task.valid.mean()),
            "invalid_reasons": reason_counts(at_task.reasons, REASON_CLASS),
            "ended_fraction": float(within_task.mean()),
            # the overlong rule is on the re-tokenized text: a cut-off sample whose text re-tokenizes to fewer
            # than task_limit tokens (a non-canonical tokenization) is scored as valid
            "valid_without_im_end": int((at_task.valid & ~within_task).sum()),
        },
        "ended_within_task_limit": group(within_task),
        "cut_off_at_task_limit": group(~within_task),
        "objective_names": list(env.objective_names),
        "examples_cut_off": [
            {"paper": c.key, "tokens": int(n), "ended": bool(e), "text": t}
            for c, n, e, t, w in zip(contexts, generated, ended, texts, within_task, strict=True)
            if not w
        ][:8],
    }


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(argv) if argv is not None else sys.argv[1:]
    args = parse_args(argv)
    result = study(args, argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    task = result["at_task_limit"]
    print(
        f"ended within {args.task_limit}: {task['ended_fraction']:.3f}; valid at {args.task_limit}: "
        f"{task['valid_fraction']:.3f} ({task['valid_without_im_end']} of them cut off); not ended within "
        f"{args.max_length}: {result['not_ended']:.3f}; wrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
