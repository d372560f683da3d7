"""Memory and time of importing (and exporting) a 124M-parameter GPT-2 checkpoint.

    python benchmarks/interop.py [--rounds 2] [--keep DIR]

Writes a randomly initialised checkpoint with GPT-2 small's shapes (12 layers, 12
heads, d_model 768, context 1024, vocabulary 50257: 124.4 M parameters, 498 MB of
float32) and a synthetic byte-level BPE of GPT-2's size (256 bytes + 50000 merges +
<|endoftext|>), then runs each of these in its own fresh process and reads the
process's peak resident memory (`os.wait4`) and wall time:

  baseline     import llm_tf and build the model: TensorFlow + one copy of the weights
  import-hf    llm-tf import-hf CKPT --run-dir RUN (reads tensor by tensor, writes the run)
  load         llm_tf.load(RUN): what export-hf does before it writes
  export-hf    llm-tf export-hf RUN --out OUT (writes tensor by tensor)
  save_file    load, then the export's tensors gathered in a dict and written with
               safetensors.numpy.save_file (what the streaming writer avoids)

The cases alternate (A B C D E A B C D E) so that a busy machine slows them alike.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

GPT2_SMALL = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": 50257,
              "n_positions": 1024, "n_ctx": 1024, "n_embd": 768, "n_layer": 12, "n_head": 12,
              "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
              "resid_pdrop": 0.1, "embd_pdrop": 0.1, "attn_pdrop": 0.1,
              "bos_token_id": 50256, "eos_token_id": 50256}

BASELINE = """
import sys
from llm_tf.config import ModelConfig
from llm_tf.interop.gpt2_format import model_config_from_hf
from llm_tf.models import TransformerLM
import json
model = TransformerLM(model_config_from_hf(json.load(open(sys.argv[1]))))
model.build()
print(model.count_params())
"""

LOAD = """
import sys
from llm_tf.saving import load
print(load(sys.argv[1]).model.count_params())
"""

SAVE_FILE = """
import sys
import numpy as np
from safetensors.numpy import save_file
from llm_tf.interop import gpt2_format as fmt
from llm_tf.saving import load
run = load(sys.argv[1])
tensors = {}
for mapping in fmt.tensor_mappings(run.model.config):
    parts = [np.asarray(v.numpy(), np.float32) for v in mapping.variables(run.model)]
    tensors[fmt.checkpoint_name(mapping.name)] = (parts[0] if len(parts) == 1
                                                  else np.concatenate(parts, axis=-1))
save_file(tensors, sys.argv[2], metadata={"format": "pt"})
"""


def write_checkpoint(directory: Path, seed: int = 0) -> int:
    """GPT-2 small's tensors, N(0, 0.02), and a tokenizer of its size; returns the bytes."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    c = GPT2_SMALL
    D, V, F = c["n_embd"], c["vocab_size"], 4 * c["n_embd"]
    normal = lambda *shape: rng.standard_normal(shape, np.float32) * 0.02  # noqa: E731
    tensors = {"transformer.wte.weight": normal(V, D),
               "transformer.wpe.weight": normal(c["n_positions"], D),
               "transformer.ln_f.weight": np.ones(D, np.float32),
               "transformer.ln_f.bias": np.zeros(D, np.float32)}
    for i in range(c["n_layer"]):
        p = f"transformer.h.{i}."
        tensors.update({
            p + "ln_1.weight": np.ones(D, np.float32), p + "ln_1.bias": np.zeros(D, np.float32),
            p + "attn.c_attn.weight": normal(D, 3 * D), p + "attn.c_attn.bias": normal(3 * D),
            p + "attn.c_proj.weight": normal(D, D), p + "attn.c_proj.bias": normal(D),
            p + "ln_2.weight": np.ones(D, np.float32), p + "ln_2.bias": np.zeros(D, np.float32),
            p + "mlp.c_fc.weight": normal(D, F), p + "mlp.c_fc.bias": normal(F),
            p + "mlp.c_proj.weight": normal(F, D), p + "mlp.c_proj.bias": normal(D)})
    directory.mkdir(parents=True, exist_ok=True)
    save_file(tensors, directory / "model.safetensors", metadata={"format": "pt"})
    (directory / "config.json").write_text(json.dumps(GPT2_SMALL, indent=2))
    from llm_tf.tokenizers.gpt2 import bytes_to_unicode
    symbols = list(bytes_to_unicode().values())  # in byte order
    # 50000 merges of two byte symbols: each result a new two-character entry.
    merges = [(a, b) for a in symbols for b in symbols][:50_000]
    vocab = {s: i for i, s in enumerate(symbols + [a + b for a, b in merges]
                                        + ["<|endoftext|>"])}
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (directory / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    return sum(t.nbytes for t in tensors.values())


def measure(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one fresh process."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    out, err = process.stdout.read().decode(), process.stderr.read().decode()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"{' '.join(argv)} failed ({process.returncode}):\n{out}\n{err}")
    return seconds, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--keep", default=None, help="work in this directory and keep it")
    args = parser.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="llm_tf_interop_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        checkpoint = work / "gpt2-random"
        start = time.perf_counter()
        size = write_checkpoint(checkpoint)
        print(f"checkpoint: {size / 1e6:.0f} MB of float32 in {checkpoint} "
              f"(written in {time.perf_counter() - start:.1f} s)", flush=True)
        python = sys.executable
        cases = {
            "baseline": lambda r: [python, "-c", BASELINE, str(checkpoint / "config.json")],
            "import-hf": lambda r: [python, "-m", "llm_tf", "import-hf", str(checkpoint),
                                    "--run-dir", str(work / "run"), "--overwrite"],
            "load": lambda r: [python, "-c", LOAD, str(work / "run")],
            "export-hf": lambda r: [python, "-m", "llm_tf", "export-hf", str(work / "run"),
                                    "--out", str(work / "out"), "--overwrite"],
            "save_file": lambda r: [python, "-c", SAVE_FILE, str(work / "run"),
                                    str(work / "by_save_file.safetensors")],
        }
        results = {name: [] for name in cases}
        for r in range(args.rounds):
            for name, argv in cases.items():
                seconds, megabytes = measure(argv(r))
                results[name].append((seconds, megabytes))
                print(f"round {r + 1}  {name:<10} {seconds:6.1f} s   peak RSS {megabytes:6.0f} MB",
                      flush=True)
        same = (work / "out" / "model.safetensors").read_bytes() == \
            (work / "by_save_file.safetensors").read_bytes()
        print(f"export-hf's file == save_file's file: {same}")
        print("\nmedian over rounds (peak RSS minus baseline = what the step adds to "
              "TensorFlow + one model copy):")
        base = float(np.median([m for _, m in results["baseline"]]))
        for name, rows in results.items():
            seconds = float(np.median([s for s, _ in rows]))
            megabytes = float(np.median([m for _, m in rows]))
            print(f"  {name:<10} {seconds:6.1f} s   peak RSS {megabytes:6.0f} MB   "
                  f"(+{megabytes - base:5.0f} MB)")
        print(f"load average at the end: {os.getloadavg()}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
