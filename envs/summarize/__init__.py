"""Summarization with a real instruction-tuned LM: faithfulness, conciseness, readability."""

from morbench.registry import register_task

ENTRY = "morbench.envs.summarize.env"

register_task("Summarize", 0, f"{ENTRY}:SummarizeEnv", f"{ENTRY}:make_vec", policy="smollm2")
# the same documents, tokenizer and rewards with a randomly initialised 2-layer Llama: tests and smoke runs
register_task("Summarize-tiny", 0, f"{ENTRY}:SummarizeEnv", f"{ENTRY}:make_vec", policy="tiny", max_length=16)
