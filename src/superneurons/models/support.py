"""What is exact for a model family: `Support`, declared by each adapter (`VLM.support`).

The conformance suite (`tests/conformance/`) checks every declaration against a plain transformers
forward; `superneurons models` prints them (`registry.family_table`). Where a feature is off, the
library refuses it (truncated loading, the cascade, capture) or falls back to the plain path and
says so (prefix reuse), with `Support.refusal`'s sentence.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

#: why the cascade is off for families whose decoder mixes attention types (Gemma3, Cohere2)
MIXED_ATTENTION = ("sliding-window and global decoder layers need different attention masks, and a resumed "
                   "forward has only layer L*'s")


@dataclass(frozen=True)
class Support:
    """What is exact for a model family (checked for every family by `tests/conformance/`).

    - `capture`: `capture()` equals a plain forward's `output_hidden_states` at the last prompt position;
    - `early_exit`: `exit_layer=k` stops the forward after layer k (nothing above it runs);
    - `truncate`: `load_model(max_layer=k)` (decoder layers 0..k only) equals the full model there;
    - `prefix_reuse`: per-image prefix reuse equals the plain path;
    - `cascade`: resuming a stopped forward (the cascade) equals a full forward.

    Where a feature is off the library refuses it (truncate, cascade) or falls back to the plain path
    and says so (prefix reuse); `why` says why it is off.
    """

    capture: bool = True
    early_exit: bool = True
    truncate: bool = True
    prefix_reuse: bool = True
    cascade: bool = True
    why: str = ""

    def features(self) -> dict[str, bool]:
        """{feature: exact} in the order above."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "why"}

    def refusal(self, feature: str, family: str) -> str:
        """The sentence the library says when `feature` is off for `family`."""
        why = f": {self.why}" if self.why else ""
        return f"{feature.replace('_', ' ')} is not exact for the {family} family{why}"
