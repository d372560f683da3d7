"""llm_tf: Transformer language models in TensorFlow/Keras.

The data's way through the package::

    text -> llm_tf.tokenizers -> llm_tf.data (tf.data windows) -> llm_tf.models
         -> llm_tf.training (GradientTape, tf.distribute, checkpoints)
         -> llm_tf.generation (KV cache, samplers) -> llm_tf.export (SavedModel)

Notation used in docstrings and shape comments throughout:
B batch, T target (or only) length, S source length, D model width (d_model),
H heads, Dh head width (D / H), F feed-forward width (dff), V vocabulary.

Configuration objects are importable without TensorFlow; layers and models are
loaded on first use so that `llm-tf --help` and config errors stay fast.
"""

import importlib

from llm_tf.config import PRESETS, DataConfig, ModelConfig, TrainConfig, get_preset

__version__ = "0.1.0"

# name -> module that defines it, imported on first attribute access.
_LAZY = {
    "layers": "llm_tf.layers",
    "models": "llm_tf.models",
    "tokenizers": "llm_tf.tokenizers",
    "data": "llm_tf.data",
    "training": "llm_tf.training",
    "generation": "llm_tf.generation",
    "saving": "llm_tf.saving",
    "export": "llm_tf.export",
    "TransformerLM": "llm_tf.models",
    "Transformer": "llm_tf.models",
    "load": "llm_tf.saving",
    "Generator": "llm_tf.generation",
    "export_run": "llm_tf.export",
    "fine_tuning": "llm_tf.fine_tuning",
    "finetune": "llm_tf.fine_tuning",
    "TransformerClassifier": "llm_tf.models",
}

__all__ = ["PRESETS", "DataConfig", "ModelConfig", "TrainConfig", "get_preset", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        value = module if module.__name__.endswith("." + name) else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'llm_tf' has no attribute {name!r}")
