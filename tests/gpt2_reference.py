"""References for the GPT-2 tests, written independently of llm_tf.

* `Encoder`: OpenAI's gpt-2 `src/encoder.py` (MIT licence), transcribed faithfully: the
  byte table, `get_pairs`, the BPE loop and the pre-tokenization regex, run by the `regex`
  package as GPT-2 ran it. The llm_tf tokenizer must give the same ids.
* `learn_bpe`: a small byte-level BPE learner (most frequent pair first, ties broken by the
  pair itself), to make a vocab.json/merges.txt for the tests from some text.
* `forward`: the GPT-2 forward pass in float64 NumPy, reading the Hugging Face tensor names
  (Conv1D weights are (in, out): y = x @ W + b).
"""

import collections
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import regex as re

END_OF_TEXT = "<|endoftext|>"
PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


@lru_cache()
def bytes_to_unicode():
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b)
            cs.append(2**8 + n)
            n += 1
    cs = [chr(n) for n in cs]
    return dict(zip(bs, cs))


def get_pairs(word):
    pairs = set()
    prev_char = word[0]
    for char in word[1:]:
        pairs.add((prev_char, char))
        prev_char = char
    return pairs


class Encoder:
    def __init__(self, encoder, bpe_merges, errors="replace"):
        self.encoder = encoder
        self.decoder = {v: k for k, v in self.encoder.items()}
        self.errors = errors
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
        self.bpe_ranks = dict(zip(bpe_merges, range(len(bpe_merges))))
        self.cache = {}
        self.pat = re.compile(PATTERN)

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = tuple(token)
        pairs = get_pairs(word)
        if not pairs:
            return token
        while True:
            bigram = min(pairs, key=lambda pair: self.bpe_ranks.get(pair, float("inf")))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            new_word = []
            i = 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                    new_word.extend(word[i:j])
                    i = j
                except ValueError:
                    new_word.extend(word[i:])
                    break
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    new_word.append(first + second)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            new_word = tuple(new_word)
            word = new_word
            if len(word) == 1:
                break
            else:
                pairs = get_pairs(word)
        word = " ".join(word)
        self.cache[token] = word
        return word

    def encode(self, text):
        bpe_tokens = []
        for token in re.findall(self.pat, text):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            bpe_tokens.extend(self.encoder[bpe_token] for bpe_token in self.bpe(token).split(" "))
        return bpe_tokens

    def decode(self, tokens):
        text = "".join([self.decoder[token] for token in tokens])
        text = bytearray([self.byte_decoder[c] for c in text]).decode("utf-8", errors=self.errors)
        return text


def learn_bpe(text, num_merges):
    """(vocab {symbol: id}, merges [(a, b)]) learned from `text` as GPT-2's were: the 256
    byte symbols in the byte table's order (so id 0 is "!", as in GPT-2), one entry per
    merge, then <|endoftext|>."""
    table = bytes_to_unicode()
    words = collections.Counter(
        tuple(table[b] for b in w.encode("utf-8")) for w in re.findall(PATTERN, text))
    vocab = {symbol: i for i, symbol in enumerate(table.values())}
    merges = []
    for _ in range(num_merges):
        pairs = collections.Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        vocab.setdefault(best[0] + best[1], len(vocab))
        merged = collections.Counter()
        for word, count in words.items():
            out, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += count
        words = merged
    vocab[END_OF_TEXT] = len(vocab)
    return vocab, merges


def write_tokenizer_files(directory, vocab, merges):
    """vocab.json and merges.txt as Hugging Face's GPT-2 repository holds them."""
    directory = Path(directory)
    (directory / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (directory / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")


# -- the model ------------------------------------------------------------------


def layer_norm(x, weight, bias, epsilon):
    mean = x.mean(-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + epsilon) * weight + bias


def gelu_new(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def forward(tensors, config, ids):
    """GPT-2's logits (T, V) for one sequence of ids, in float64.

    `tensors`: {Hugging Face name without "transformer.": array}; `config`: config.json."""
    w = {k: np.asarray(v, np.float64) for k, v in tensors.items()}
    D, H, eps = config["n_embd"], config["n_head"], config["layer_norm_epsilon"]
    T = len(ids)
    x = w["wte.weight"][ids] + w["wpe.weight"][:T]                       # (T, D)
    causal = np.tril(np.ones((T, T), bool))
    for i in range(config["n_layer"]):
        p = f"h.{i}."
        h = layer_norm(x, w[p + "ln_1.weight"], w[p + "ln_1.bias"], eps)
        qkv = h @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]  # (T, 3D)
        q, k, v = np.split(qkv, 3, axis=-1)
        heads = lambda a: a.reshape(T, H, D // H).transpose(1, 0, 2)    # noqa: E731 (H, T, Dh)
        q, k, v = heads(q), heads(k), heads(v)
        scores = q @ k.transpose(0, 2, 1) / np.sqrt(D // H)                # (H, T, T)
        scores = np.where(causal, scores, -np.inf)
        weights = np.exp(scores - scores.max(-1, keepdims=True))
        weights /= weights.sum(-1, keepdims=True)
        context = (weights @ v).transpose(1, 0, 2).reshape(T, D)
        x = x + context @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
        h = layer_norm(x, w[p + "ln_2.weight"], w[p + "ln_2.bias"], eps)
        h = gelu_new(h @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"])
        x = x + h @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
    x = layer_norm(x, w["ln_f.weight"], w["ln_f.bias"], eps)
    head = w.get("lm_head.weight", w["wte.weight"])                      # (V, D), nn.Linear
    return x @ head.T                                                    # (T, V)
