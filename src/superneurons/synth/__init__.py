"""Synthetic categorical-VQA benchmark (coloured shapes, pure PIL) and the shipped demo VLM.

`make_scene` draws a deterministic scene, the question families in `questions` ask yes/no
questions whose labels come from the scene description, `generate_benchmark` writes images +
JSONL per split and family, and `demo_model_path()` is the folder of the tiny LLaVA trained on
these scenes by `scripts/train_demo_vlm.py` (see its MODEL_CARD.md).
"""

from pathlib import Path

from superneurons.errors import ModelError
from superneurons.synth.generate import DEPTH_CUE, SPLITS, generate_benchmark
from superneurons.synth.questions import ALL_FAMILIES, FAMILIES, Question, mcq_questions
from superneurons.synth.scenes import COLORS, SHAPES, SIZES, Scene, SceneObject, make_scene

DEMO_MODEL_DIR = "demo_model"


def demo_model_path() -> Path:
    """The shipped demo model folder (loads with `LlavaForConditionalGeneration.from_pretrained`)."""
    path = Path(__file__).parent / DEMO_MODEL_DIR
    if not (path / "config.json").is_file():
        raise ModelError(f"the demo model is missing from {path}; reinstall superneurons or retrain it with "
                         "`python scripts/train_demo_vlm.py`")
    return path


__all__ = [
    "ALL_FAMILIES",
    "COLORS",
    "DEPTH_CUE",
    "FAMILIES",
    "SHAPES",
    "SIZES",
    "SPLITS",
    "Question",
    "Scene",
    "SceneObject",
    "demo_model_path",
    "generate_benchmark",
    "make_scene",
    "mcq_questions",
]
