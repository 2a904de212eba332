"""Tiny random VLMs built from configs (`factory.py`), for tests and benchmarks: no hub, no network."""

from superneurons.testing.factory import build_tokenizer, make_tiny_llava, make_tiny_qwen_vl

__all__ = ["build_tokenizer", "make_tiny_llava", "make_tiny_qwen_vl"]
