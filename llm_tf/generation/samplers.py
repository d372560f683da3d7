"""Samplers: small pure functions that pick the next token from logits (B, V).

The design document's §5.2 samples with `tf.random.categorical(predictions, ...)`
on a (1, 1, V) tensor (categorical wants (B, V)) and reads row `[-1, 0]`; it also
draws from the global random state, so the same call never gives the same text
twice. Here every random draw is a pure function of an explicit seed, the step
number and the row, so a seed reproduces the same text in memory, after
reloading the weights, and inside the exported SavedModel.

Why not `tf.random.stateless_categorical`? Stateless ops are deterministic for
one execution mode, but XLA implements them with other bits (and categorical
with another algorithm) than the TensorFlow kernels: the same seed gives
different samples with and without `jit_compile`. `uniform_noise` below derives
its bits from an integer hash (Wellons' `lowbias32`), which both modes compute
exactly, and samples by the Gumbel-max trick:

    argmax_v (logits_v / T + g_v),  g_v = -log(-log u_v),  u_v ~ U(0, 1)

draws v with probability softmax(logits / T)_v (Gumbel 1954; see e.g. Maddison
et al. 2014). The noise of row b does not depend on the batch size, so a prompt
samples the same text at row 0 of any batch.

Order of the filters (as in Hugging Face's `generate` and keras-hub): temperature,
then top-k, then top-p on what top-k kept. `temperature == 0` means greedy.
The functions take Python numbers or scalar tensors (the SavedModel passes tensors),
and keep static shapes so that they compile under XLA. `Sampling` holds one set of
parameters, validated once.
"""

import dataclasses
import random
from typing import Optional

import tensorflow as tf

from llm_tf._validation import is_int, is_number

_GOLDEN = 0x9E3779B9  # 2^32 / golden ratio: spreads consecutive counters apart


# The rules, stated once: `Sampling` checks Python values with them, `Sampling.graph_checks`
# tensors (inside the SavedModel), with the same words.
RULES = {
    "temperature": "`temperature` must be a number >= 0 (0 means greedy)",
    "top_k": "`top_k` must be an integer >= 0 (0 disables top-k)",
    "top_p": "`top_p` must be a number in (0, 1] (1 disables top-p)",
    "seed": "`seed` must be an integer or None",
}


def normalize_seed(seed: Optional[int]) -> int:
    """An int32 seed: a random one for None, any Python int wrapped into int32 range."""
    if seed is None:
        return random.SystemRandom().randrange(2**31)
    if not is_int(seed):
        raise ValueError(f"{RULES['seed']}. Received: seed={seed!r}")
    return (seed + 2**31) % 2**32 - 2**31


@dataclasses.dataclass(frozen=True)
class Sampling:
    """How each next token is picked, checked once when made.

    Attributes:
        temperature: >= 0; 0 is greedy (top-k and top-p are then irrelevant).
        top_k: >= 0 most likely tokens kept; 0 disables top-k.
        top_p: nucleus mass in (0, 1]; 1 disables top-p.
        seed: the int32 seed of the draws; None (the default) draws a fresh one,
            which `seed` then holds, so the text can be repeated.
    """

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    seed: Optional[int] = None

    def __post_init__(self):
        if not (is_number(self.temperature) and self.temperature >= 0):
            raise ValueError(f"{RULES['temperature']}. Received: temperature={self.temperature!r}")
        if not (is_int(self.top_k) and self.top_k >= 0):
            raise ValueError(f"{RULES['top_k']}. Received: top_k={self.top_k!r}")
        if not (is_number(self.top_p) and 0 < self.top_p <= 1):
            raise ValueError(f"{RULES['top_p']}. Received: top_p={self.top_p!r}")
        object.__setattr__(self, "seed", normalize_seed(self.seed))

    def tensors(self) -> tuple:
        """(temperature float32, top_k int32, top_p float32, seed int32) scalars: what the
        compiled decode loop and the SavedModel's signatures take."""
        return (tf.constant(self.temperature, tf.float32), tf.constant(self.top_k, tf.int32),
                tf.constant(self.top_p, tf.float32), tf.constant(self.seed, tf.int32))

    @staticmethod
    def graph_checks(temperature, top_k, top_p) -> list:
        """The same rules for scalar tensors: assertion ops raising `InvalidArgumentError`."""
        return [
            tf.debugging.assert_greater_equal(temperature, 0.0, message=RULES["temperature"]),
            tf.debugging.assert_greater_equal(top_k, 0, message=RULES["top_k"]),
            tf.debugging.assert_greater(top_p, 0.0, message=RULES["top_p"]),
            tf.debugging.assert_less_equal(top_p, 1.0, message=RULES["top_p"]),
        ]


def greedy(logits):
    """The most likely token of each row: int32 (B,). Ties go to the lowest id."""
    return tf.argmax(logits, axis=-1, output_type=tf.int32)


def _lowbias32(x):
    """A 32-bit integer hash with good avalanche (C. Wellons, "Prospecting for hash functions")."""
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(16, tf.uint32)))
    x = x * tf.constant(0x7FEB352D, tf.uint32)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(15, tf.uint32)))
    x = x * tf.constant(0x846CA68B, tf.uint32)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(16, tf.uint32)))


def _as_uint32(value):
    value = tf.convert_to_tensor(value)
    if value.dtype == tf.uint32:
        return value
    return tf.bitcast(tf.cast(value, tf.int32), tf.uint32)  # negative seeds keep their bits


def uniform_noise(seed, step, shape):
    """U(0, 1) noise (B, V), a pure function of (seed, step, row, column).

    Args:
        seed: int scalar (int32 bits are used).
        step: int scalar, the index of the generated token (0 for the first).
        shape: (B, V), Python ints or a shape tensor.

    Returns:
        float32 (B, V) in the open interval (0, 1), identical with and without XLA.
    """
    key = _lowbias32(_lowbias32(_as_uint32(seed)) ^ _lowbias32(
        _as_uint32(step) * tf.constant(_GOLDEN, tf.uint32) + tf.constant(1, tf.uint32)))
    rows = tf.range(shape[0], dtype=tf.int32)[:, None]  # (B, 1)
    columns = tf.range(shape[1], dtype=tf.int32)[None, :]  # (1, V)
    counter = tf.bitcast(rows * tf.cast(shape[1], tf.int32) + columns, tf.uint32)  # (B, V)
    bits = _lowbias32(_lowbias32(counter) ^ key)  # (B, V)
    # The top 24 bits, centred in their bucket: exact in float32, never 0 or 1.
    return (tf.cast(tf.bitwise.right_shift(bits, tf.constant(8, tf.uint32)), tf.float32)
            + 0.5) * (2.0 ** -24)


def filter_top_k_top_p(logits, top_k=0, top_p=1.0):
    """Sets to -inf every logit outside the top-k and outside the top-p nucleus.

    Top-k keeps the k largest logits (k = 0: all). Top-p (Holtzman et al. 2020)
    then keeps the smallest set of the most likely remaining tokens whose
    probability reaches p (p = 1: all). Tokens tied with the last one kept are
    kept too. One sort serves both, with static shapes (XLA needs them; `tf.math.top_k`
    with a tensor k does not have one).

    Args:
        logits: float32 (B, V), already divided by the temperature.
        top_k: int scalar >= 0.
        top_p: float scalar in (0, 1].

    Returns:
        float32 (B, V).
    """
    vocab_size = tf.shape(logits)[-1]
    top_k = tf.cast(top_k, tf.int32)
    top_p = tf.cast(top_p, logits.dtype)
    sorted_logits = tf.sort(logits, axis=-1, direction="DESCENDING")  # (B, V)
    ranks = tf.range(vocab_size)[None, :]  # (1, V)
    k = tf.where(top_k > 0, tf.minimum(top_k, vocab_size), vocab_size)
    sorted_logits = tf.where(ranks < k, sorted_logits, float("-inf"))  # (B, V)
    probabilities = tf.nn.softmax(sorted_logits, axis=-1)  # (B, V)
    # A token is in the nucleus if the mass of the tokens before it is < p; the
    # first token always is (its exclusive cumulative sum is 0 < p).
    mass_before = tf.math.cumsum(probabilities, axis=-1, exclusive=True)  # (B, V)
    kept = tf.logical_and(ranks < k, tf.logical_or(mass_before < top_p, top_p >= 1.0))
    num_kept = tf.maximum(tf.reduce_sum(tf.cast(kept, tf.int32), axis=-1), 1)  # (B,)
    threshold = tf.gather(sorted_logits, num_kept - 1, axis=1, batch_dims=1)  # (B,)
    return tf.where(logits >= threshold[:, None], logits, float("-inf"))


def sample(logits, seed, step, temperature=1.0, top_k=0, top_p=1.0):
    """Picks one token per row: greedy if temperature == 0, else a seeded draw.

    Args:
        logits: float (B, V).
        seed: int scalar; the same (seed, step) gives the same tokens.
        step: int scalar, index of the token being generated.
        temperature: >= 0; 0 means greedy (top-k and top-p are then irrelevant).
        top_k: >= 0, 0 disables it.
        top_p: in (0, 1], 1 disables it.

    Returns:
        int32 (B,).
    """
    logits = tf.cast(logits, tf.float32)
    temperature = tf.cast(temperature, tf.float32)
    top_k = tf.cast(top_k, tf.int32)
    top_p = tf.cast(top_p, tf.float32)
    scaled = logits / tf.where(temperature > 0, temperature, 1.0)  # (B, V)
    # The sort costs O(V log V) per step: skip it when neither filter is on.
    scaled = tf.cond(tf.logical_or(top_k > 0, top_p < 1.0),
                     lambda: filter_top_k_top_p(scaled, top_k, top_p), lambda: scaled)
    gumbel = -tf.math.log(-tf.math.log(uniform_noise(seed, step, tf.shape(logits))))  # (B, V)
    drawn = tf.argmax(scaled + gumbel, axis=-1, output_type=tf.int32)  # (B,)
    return tf.where(temperature > 0, drawn, greedy(logits))
