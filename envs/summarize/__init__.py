"""Summarization with a real instruction-tuned LM: faithfulness, conciseness, readability."""
