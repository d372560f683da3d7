"""nanoGPT (github.com/karpathy/nanoGPT, `model.py` and the core of `train.py`) in PyTorch.

The other side of `benchmarks/vs_pytorch.py`, transcribed from nanoGPT as it is, so the
comparison is with the program people actually run on a CPU (`--device=cpu --compile=False`):

* `GPT`: token + learned position embeddings, pre-LN blocks (`x + attn(ln_1(x))`,
  `x + mlp(ln_2(x))`), fused QKV projection, `F.scaled_dot_product_attention(is_causal=True)`,
  exact GELU, optional biases (`LayerNorm` with `bias=False` has no offset), final LayerNorm,
  the head tied to the token embedding; nanoGPT's init: N(0, 0.02), `c_proj` weights
  N(0, 0.02 / sqrt(2L)), biases zero.
* `configure_optimizers`: AdamW with two groups, weight decay on parameters of rank >= 2 only,
  `fused` only on CUDA (so on a CPU the default for-each implementation).
* `get_lr`: linear warm-up over `warmup_iters`, cosine to `min_lr` at `lr_decay_iters`.
* `get_batch`: `batch_size` random offsets with replacement (`torch.randint`) into the
  training tokens.
* The loop: forward under the precision context, the next batch fetched, backward, clip
  the global norm at `grad_clip`, step, `zero_grad(set_to_none=True)`; every
  `log_interval` iterations `loss.item()` (the host sync) and a printed line.

Requires `torch` (an optional benchmark dependency; llm_tf and its tests never import it).
"""

from __future__ import annotations

import inspect
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
from torch.nn import functional as F


@dataclass
class GPTConfig:
    block_size: int = 1024
    vocab_size: int = 50304
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (PyTorch's has no `bias=False` before 2.1)."""

    def __init__(self, ndim, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, input):
        return F.layer_norm(input, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=None,
                                           dropout_p=self.dropout if self.training else 0,
                                           is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying
        self.apply(self._init_weights)
        for pn, p in self.named_parameters():
            if pn.endswith("c_proj.weight"):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def get_num_params(self, non_embedding=True):
        n_params = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n_params -= self.transformer.wpe.weight.numel()
        return n_params

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx, targets=None):
        b, t = idx.size()
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device)  # (t)
        tok_emb = self.transformer.wte(idx)  # (b, t, n_embd)
        pos_emb = self.transformer.wpe(pos)  # (t, n_embd)
        x = self.transformer.drop(tok_emb + pos_emb)
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        logits = self.lm_head(x)  # (b, t, vocab_size)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1),
                                   ignore_index=-1)
        return logits, loss

    def configure_optimizers(self, weight_decay, learning_rate, betas, device_type):
        param_dict = {pn: p for pn, p in self.named_parameters() if p.requires_grad}
        decay_params = [p for n, p in param_dict.items() if p.dim() >= 2]
        nodecay_params = [p for n, p in param_dict.items() if p.dim() < 2]
        optim_groups = [{"params": decay_params, "weight_decay": weight_decay},
                        {"params": nodecay_params, "weight_decay": 0.0}]
        fused_available = "fused" in inspect.signature(torch.optim.AdamW).parameters
        use_fused = fused_available and device_type == "cuda"
        extra_args = dict(fused=True) if use_fused else dict()
        return torch.optim.AdamW(optim_groups, lr=learning_rate, betas=betas, **extra_args)

    def flops_per_token(self, T):
        """nanoGPT's `estimate_mfu` numerator per token: 6N + 12·L·H·Q·T (PaLM, appendix B)."""
        cfg = self.config
        L, H, Q = cfg.n_layer, cfg.n_head, cfg.n_embd // cfg.n_head
        return 6 * self.get_num_params() + 12 * L * H * Q * T


def get_lr(it, learning_rate, warmup_iters, lr_decay_iters, min_lr):
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    if it > lr_decay_iters:
        return min_lr
    decay_ratio = (it - warmup_iters) / (lr_decay_iters - warmup_iters)
    assert 0 <= decay_ratio <= 1
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))
    return min_lr + coeff * (learning_rate - min_lr)


def get_batch(data, block_size, batch_size):
    """nanoGPT's `get_batch('train')` on a CPU: random offsets, with replacement."""
    ix = torch.randint(len(data) - block_size, (batch_size,))
    x = torch.stack([torch.from_numpy((data[i:i + block_size]).astype(np.int64)) for i in ix])
    y = torch.stack([torch.from_numpy((data[i + 1:i + 1 + block_size]).astype(np.int64))
                     for i in ix])
    return x, y


def train(model_args: dict, train_data: np.ndarray, *, batch_size, max_iters, lr_decay_iters,
          learning_rate, min_lr, warmup_iters, weight_decay=1e-1, beta1=0.9, beta2=0.99,
          grad_clip=1.0, log_interval=10, dtype="float32", seed=1337, on_log=None):
    """nanoGPT's training loop (single process, CPU, no evaluation inside the loop).

    Like nanoGPT, it makes `max_iters + 1` updates (iterations 0 .. max_iters) and logs at
    iterations 0, log_interval, ...; `on_log(iter_num, loss)` is called after each log line
    (the loss is `loss.item()`, the one host sync of nanoGPT's loop). Returns the model.
    """
    torch.manual_seed(seed)
    model = GPT(GPTConfig(**model_args))
    optimizer = model.configure_optimizers(weight_decay, learning_rate, (beta1, beta2), "cpu")
    # nanoGPT's `ctx` is `nullcontext()` on a CPU; bfloat16 here is torch's CPU autocast.
    ctx = (nullcontext() if dtype == "float32" else
           torch.autocast(device_type="cpu", dtype=torch.bfloat16))
    block_size = model_args["block_size"]
    X, Y = get_batch(train_data, block_size, batch_size)
    t0 = time.time()
    iter_num = 0
    model.train()
    while True:
        lr = get_lr(iter_num, learning_rate, warmup_iters, lr_decay_iters, min_lr)
        for param_group in optimizer.param_groups:
            param_group["lr"] = lr
        with ctx:
            logits, loss = model(X, Y)
        X, Y = get_batch(train_data, block_size, batch_size)
        loss.backward()
        if grad_clip != 0.0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        t1 = time.time()
        dt = t1 - t0
        t0 = t1
        if iter_num % log_interval == 0:
            lossf = loss.item()
            print(f"iter {iter_num}: loss {lossf:.4f}, time {dt * 1000:.2f}ms", flush=True)
            if on_log:
                on_log(iter_num, lossf)
        iter_num += 1
        if iter_num > max_iters:
            break
    return model


@torch.no_grad()
def whole_split_loss(model, data: np.ndarray, block_size, batch_size, dtype="float32"):
    """Mean loss over `data` in non-overlapping windows of `block_size` predictions (the
    measure llm_tf's evaluation uses; the tail shorter than a window is left out)."""
    model.eval()
    ctx = (nullcontext() if dtype == "float32" else
           torch.autocast(device_type="cpu", dtype=torch.bfloat16))
    n = (len(data) - 1) // block_size
    starts = np.arange(n) * block_size
    total, count = 0.0, 0
    for i in range(0, n, batch_size):
        ix = starts[i:i + batch_size]
        x = torch.stack([torch.from_numpy(data[j:j + block_size].astype(np.int64)) for j in ix])
        y = torch.stack([torch.from_numpy(data[j + 1:j + 1 + block_size].astype(np.int64))
                         for j in ix])
        with ctx:
            _, loss = model(x, y)
        total += float(loss) * y.numel()
        count += y.numel()
    model.train()
    return total / count
