"""Tiny random VLMs built from configs, for tests and benchmarks: no hub, no network.

`factory.py`: LLaVA and Qwen-VL builders with size overrides, the local tokenizer, chat templates;
`families.py`: one tiny builder per family the conformance suite checks (`make_tiny_family`).
"""

from superneurons.testing.factory import build_tokenizer, make_tiny_llava, make_tiny_qwen_vl
from superneurons.testing.families import FAMILY_BUILDERS, make_tiny_family

__all__ = ["FAMILY_BUILDERS", "build_tokenizer", "make_tiny_family", "make_tiny_llava", "make_tiny_qwen_vl"]
