"""superneurons: Super Neurons for categorical VQA (Musacchio et al.), on any Hugging Face VLM.

Public API only; importing this package has no side effects.
"""

from superneurons.data import Sample, balanced_sample, load_samples
from superneurons.errors import DataError, ModelError, StoreError, SuperNeuronsError

__version__ = "0.1.0"

__all__ = [
    "DataError",
    "ModelError",
    "Sample",
    "StoreError",
    "SuperNeuronsError",
    "__version__",
    "balanced_sample",
    "load_samples",
]
