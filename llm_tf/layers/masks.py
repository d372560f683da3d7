"""Attention masks as small pure functions.

Convention everywhere in llm_tf: a mask is boolean and **True means "may attend"**
(for padding masks: "is a real token"). Masks are combined with logical AND, and
broadcast against attention scores of shape (B, H, Tq, Tk).
"""

import tensorflow as tf


def causal_mask(query_length, key_length=None, query_offset=0):
    """Lower-triangular mask: query i may attend key j iff j <= query_offset + i.

    `query_offset` is the absolute position of the first query, which is what
    incremental decoding needs: with a key/value cache of length Tk, the t new
    queries sit at positions [offset, offset + t).

    Args:
        query_length: Tq (Python int or scalar int tensor).
        key_length: Tk; defaults to `query_length`.
        query_offset: absolute position of query 0 (int or scalar int tensor).

    Returns:
        bool tensor (Tq, Tk).
    """
    if key_length is None:
        key_length = query_length
    query_positions = tf.range(query_length)[:, None] + tf.cast(query_offset, tf.int32)  # (Tq, 1)
    key_positions = tf.range(key_length)[None, :]  # (1, Tk)
    return key_positions <= query_positions


def padding_mask(token_ids, pad_id=0):
    """True where `token_ids` (B, T) is a real token, False where it is `pad_id`. -> (B, T)."""
    return tf.not_equal(token_ids, tf.cast(pad_id, token_ids.dtype))


def key_padding_mask(padding):
    """Turns a (B, Tk) token mask into an attention mask (B, 1, Tk) over keys.

    Only keys are masked: a padded *query* still gets an output (it attends to
    the real tokens), which is harmless because nothing downstream reads it
    (the loss ignores padded targets) and it never yields NaN.
    """
    return padding[:, None, :]


def combine_masks(*masks):
    """Logical AND of the masks that are not None, with broadcasting; None if all are None."""
    present = [m for m in masks if m is not None]
    if not present:
        return None
    combined = tf.cast(present[0], tf.bool)
    for mask in present[1:]:
        combined = tf.logical_and(combined, tf.cast(mask, tf.bool))
    return combined


def decoder_self_attention_mask(query_length, key_length=None, query_offset=0, padding=None):
    """Causal mask, AND-ed with a key padding mask when `padding` (B, Tk) is given.

    Returns:
        bool (Tq, Tk) without padding, (B, Tq, Tk) with it.
    """
    causal = causal_mask(query_length, key_length, query_offset)
    if padding is None:
        return causal
    return combine_masks(causal[None, :, :], key_padding_mask(padding))
