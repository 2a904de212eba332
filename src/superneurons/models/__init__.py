"""Models: `load_model(name_or_path)` -> `VLM`, one adapter per family, fingerprints, truncated loading.

    >>> vlm = load_model("llava-hf/llava-1.5-7b-hf")            # doctest: +SKIP
    >>> vlm.num_layers, vlm.hidden_size, vlm.prompt_template    # doctest: +SKIP
    (32, 4096, 'USER: <image>\\n{question} ASSISTANT:')

| module | owns |
|---|---|
| base.py | `VLM`: prompts, inputs, structure, tokens and the hooks a family overrides |
| registry.py | adapters by `config.model_type`; unknown types take the generic `VLM` path |
| loading.py | `load_model`, device and dtype resolution |
| fingerprint.py | config hash + weight sketch, the one comparison (`same_fingerprint`) |
| truncate.py | load only decoder layers 0..k from a safetensors checkpoint |
| processors.py | any family's processor built image-only when torchvision is missing |
| support.py | `Support`: what is exact for a family (capture, early exit, truncate, prefix reuse, cascade) |
| llava.py, qwen_vl.py | LLaVA-1.5; Qwen2-VL, Qwen2.5-VL, Qwen3-VL and GLM-4V (multimodal RoPE) |
| gemma.py, idefics.py, mllama.py, fuyu.py, cohere.py | Gemma3 + PaliGemma, SmolVLM, Mllama, Fuyu, Aya Vision |

`registry.family_table()` is what `superneurons models` prints: every family the conformance suite
checks, its adapter and what is exact for it (`VLM.support`).
"""

from __future__ import annotations

from superneurons.models import cohere as _cohere  # noqa: F401  (registers the adapter)
from superneurons.models import fuyu as _fuyu  # noqa: F401
from superneurons.models import gemma as _gemma  # noqa: F401
from superneurons.models import idefics as _idefics  # noqa: F401
from superneurons.models import llava as _llava  # noqa: F401
from superneurons.models import mllama as _mllama  # noqa: F401
from superneurons.models import qwen_vl as _qwen_vl  # noqa: F401
from superneurons.models.base import VLM, LayerReplay
from superneurons.models.fingerprint import config_fingerprint, same_fingerprint, same_weights
from superneurons.models.loading import load_model, resolve_device, resolve_dtype
from superneurons.models.registry import adapter_names, family_table, get_adapter, register_adapter
from superneurons.models.support import Support

__all__ = ["VLM", "LayerReplay", "Support", "adapter_names", "config_fingerprint", "family_table", "get_adapter",
           "load_model", "register_adapter", "resolve_device", "resolve_dtype", "same_fingerprint", "same_weights"]
