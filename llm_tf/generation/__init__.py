"""Text generation: samplers, the cached decode loop, and the Python API.

* `samplers`  — greedy / temperature / top-k / top-p over (B, V) logits, seeded; `Sampling`.
* `decode`    — prompt layout, prefill, `tf.while_loop` over cached steps, and the
  full-recompute reference loop (the design document's §5.2, done right).
* `generator` — `Generator(model, tokenizer)`: compiled generation and streaming;
  `training_sampler`, the text printed at each evaluation while training.
"""

from llm_tf.generation.decode import (
                                      cached_decode,
                                      check_max_new_tokens,
                                      generate_reference,
                                      prepare_prompts,
)
from llm_tf.generation.generator import Generator, generate, generate_ids, training_sampler
from llm_tf.generation.samplers import (
                                      Sampling,
                                      filter_top_k_top_p,
                                      greedy,
                                      normalize_seed,
                                      sample,
                                      uniform_noise,
)

__all__ = ["Generator", "Sampling", "cached_decode", "check_max_new_tokens",
           "filter_top_k_top_p", "generate", "generate_ids", "generate_reference", "greedy",
           "normalize_seed", "prepare_prompts", "sample", "training_sampler", "uniform_noise"]
