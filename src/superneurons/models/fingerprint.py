"""Model fingerprints: what activation stores and classifiers record about the model they came from.

A fingerprint is a JSON-able dict: architecture, sha256 of the config (run-time fields dropped),
number of decoder layers, hidden size, and a `weights` sketch (signs of 256 weights) that tells a
retrained checkpoint with the same config apart. `same_fingerprint` is the one comparison every
check uses (store resume, rank merges, classifier compatibility).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

SKETCH_BITS = 256
SKETCH_TOLERANCE = 0.05  #: fraction of differing bits still read as the same weights

_VOLATILE_CONFIG_KEYS = frozenset({
    "transformers_version", "_name_or_path", "name_or_path", "dtype", "torch_dtype", "_commit_hash",
    "_attn_implementation", "_attn_implementation_autoset", "attn_implementation", "use_cache",
    "output_hidden_states", "output_attentions", "return_dict"})


def _stable(obj: Any) -> Any:
    """The config dict without run-time fields (dtype, attention kernel, paths), at every depth."""
    if isinstance(obj, dict):
        return {k: _stable(v) for k, v in obj.items() if k not in _VOLATILE_CONFIG_KEYS}
    if isinstance(obj, list | tuple):
        return [_stable(v) for v in obj]
    return obj


def config_fingerprint(config: Any, num_layers: int, hidden_size: int) -> dict[str, Any]:
    """architecture, sha256 of the config JSON (sorted keys, run-time fields dropped), L, D.

    The same checkpoint loaded in another dtype or on another device has the same fingerprint.
    `VLM` adds `weights` (a `weight_sketch`), compared with `same_weights`.
    """
    blob = json.dumps(_stable(config.to_dict()), sort_keys=True, default=str).encode()
    archs = getattr(config, "architectures", None) or [type(config).__name__.replace("Config", "")]
    return {"architecture": archs[0], "config_hash": hashlib.sha256(blob).hexdigest(),
            "num_layers": int(num_layers), "hidden_size": int(hidden_size)}


def sample_positions(numel: int, per: int) -> torch.Tensor:
    """The flat indices a sketch reads from a tensor of `numel` values (`per` of them, evenly spread)."""
    import torch

    return torch.linspace(0, numel - 1, per).long()


def sketch_hex(signs: Sequence[torch.Tensor]) -> str:
    """The sketch string of boolean sign tensors (in order), as hex."""
    import torch

    flat = torch.cat([s.reshape(-1).cpu() for s in signs])
    value = int("".join("1" if b else "0" for b in flat.tolist()), 2)
    return f"{value:0{(flat.numel() + 3) // 4}x}"


def weight_sketch(tensors: Sequence[torch.Tensor], bits: int = SKETCH_BITS) -> str | None:
    """Signs of `bits` weights spread evenly over `tensors`, as hex; None if a tensor is not in memory.

    Why signs: casting a checkpoint to fp16 / bf16 or moving it to another device keeps them (up to
    fp16 underflow of values below 6e-8), while another training run flips about half of them. So the
    sketch tells a retrained checkpoint with the same config apart at the cost of reading `bits` values.
    `VLM.weight_sketch` reads the same values from the checkpoint files when it can
    (`truncate.checkpoint_sketch`), so a quantized load, whose tensors are packed, has the sketch
    of the same weights loaded unquantized.
    """
    import torch

    tensors = [t for t in tensors if t.is_floating_point() and t.numel() > 0]
    if not tensors or any(t.device.type == "meta" for t in tensors):
        return None
    per = max(1, bits // len(tensors))
    with torch.no_grad():
        signs = [t.detach().reshape(-1)[sample_positions(t.numel(), per).to(t.device)] > 0 for t in tensors]
    return sketch_hex(signs)


def same_weights(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two fingerprints' weight sketches agree (True when either has none, as older artifacts)."""
    sa, sb = a.get("weights"), b.get("weights")
    if not sa or not sb:
        return True
    if len(sa) != len(sb):
        return False
    return bin(int(sa, 16) ^ int(sb, 16)).count("1") <= SKETCH_TOLERANCE * len(sa) * 4


def same_fingerprint(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two fingerprints name the same model: every field equal, the weight sketch by `same_weights`."""
    def rest(fp: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in fp.items() if k != "weights"}

    return rest(a) == rest(b) and same_weights(a, b)


def describe(fp: dict[str, Any]) -> str:
    """A short human form of a fingerprint: architecture, config hash and weight sketch prefixes."""
    return (f"{fp.get('architecture')}, config {str(fp.get('config_hash'))[:12]}, "
            f"weights {str(fp.get('weights'))[:12]}")
