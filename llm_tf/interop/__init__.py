"""Published checkpoints in and out: GPT-2-family weights in Hugging Face's format.

    safetensors_io.py   safetensors files, one tensor at a time (read a directory, write a file)
    gpt2_format.py      the format mapping: config.json fields and tensor names/shapes
                        <-> ModelConfig and TransformerLM's variables
    hf_checkpoint.py    a checkpoint directory (config, tokenizer, weights) <-> model + tokenizer

`llm-tf import-hf DIR --run-dir OUT` and `llm-tf export-hf RUN --out DIR` are the
commands; docs/interop.md has the tables and the measured cost.
"""

from llm_tf.interop.hf_checkpoint import Checkpoint, read_checkpoint, write_checkpoint
from llm_tf.interop.safetensors_io import CheckpointError

__all__ = ["Checkpoint", "CheckpointError", "read_checkpoint", "write_checkpoint"]
