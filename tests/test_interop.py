"""GPT-2 checkpoints in and out: the same logits as a NumPy GPT-2, bit-identical round trips,
generation, fine-tuning and export of the imported model, and one-line errors.

The tests build their own small GPT-2-shaped checkpoints (random weights written with
`safetensors`, a vocabulary learned for the test): nothing is downloaded.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from gpt2_reference import END_OF_TEXT, Encoder, forward, learn_bpe, write_tokenizer_files
from safetensors import safe_open
from safetensors.numpy import save_file

from llm_tf import cli, saving
from llm_tf.config import ModelConfig
from llm_tf.data import builtin_text
from llm_tf.generation import Generator
from llm_tf.generation.decode import generate_reference
from llm_tf.generation.samplers import Sampling
from llm_tf.models import TransformerLM
from llm_tf.tokenizers import train_tokenizer

TEXT = builtin_text()[:12_000] + "Café crème, déjà vu. 你好，世界！Launch 🚀 now 👍🏽."
PROMPTS = ["The value of", "Café 🚀", "x"]
GPT2_CONFIG = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_embd": 32,
               "n_head": 4, "n_layer": 2, "n_positions": 48, "layer_norm_epsilon": 1e-5,
               "activation_function": "gelu_new", "resid_pdrop": 0.0, "embd_pdrop": 0.0,
               "attn_pdrop": 0.0}


@pytest.fixture(scope="module")
def bpe():
    vocab, merges = learn_bpe(TEXT, 200)
    return vocab, merges


def random_tensors(config, seed=0, untied=False):
    """GPT-2's tensors (Hugging Face names, no prefix) for `config`, float32 N(0, 0.2)."""
    rng = np.random.default_rng(seed)
    D, V, L = config["n_embd"], config["vocab_size"], config["n_layer"]
    F = config.get("n_inner") or 4 * D
    normal = lambda *shape: rng.normal(0.0, 0.2, shape).astype(np.float32)  # noqa: E731
    tensors = {"wte.weight": normal(V, D), "wpe.weight": normal(config["n_positions"], D),
               "ln_f.weight": 1 + normal(D), "ln_f.bias": normal(D)}
    for i in range(L):
        p = f"h.{i}."
        tensors.update({
            p + "ln_1.weight": 1 + normal(D), p + "ln_1.bias": normal(D),
            p + "attn.c_attn.weight": normal(D, 3 * D), p + "attn.c_attn.bias": normal(3 * D),
            p + "attn.c_proj.weight": normal(D, D), p + "attn.c_proj.bias": normal(D),
            p + "ln_2.weight": 1 + normal(D), p + "ln_2.bias": normal(D),
            p + "mlp.c_fc.weight": normal(D, F), p + "mlp.c_fc.bias": normal(F),
            p + "mlp.c_proj.weight": normal(F, D), p + "mlp.c_proj.bias": normal(D)})
    if untied:
        tensors["lm_head.weight"] = normal(V, D)
    return tensors


def write_checkpoint_dir(directory, bpe, *, prefix="transformer.", buffers=True, shards=1,
                         dtype=np.float32, tokenizer_json=False, seed=0, **config_changes):
    """A Hugging Face GPT-2 directory; returns (config, tensors as stored, without prefix)."""
    vocab, merges = bpe
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {**GPT2_CONFIG, "vocab_size": len(vocab), "bos_token_id": vocab[END_OF_TEXT],
              "eos_token_id": vocab[END_OF_TEXT], **config_changes}
    tensors = random_tensors(config, seed, untied=config.get("tie_word_embeddings") is False)
    tensors = {k: v.astype(dtype) for k, v in tensors.items()}
    stored = {(k if k.startswith("lm_head") else prefix + k): v for k, v in tensors.items()}
    if buffers:  # what older GPT-2 checkpoints carry: the causal mask, not weights
        T = config["n_positions"]
        for i in range(config["n_layer"]):
            stored[f"{prefix}h.{i}.attn.bias"] = np.tril(np.ones((T, T), dtype))[None, None]
            stored[f"{prefix}h.{i}.attn.masked_bias"] = np.array(-1e4, dtype)
    (directory / "config.json").write_text(json.dumps(config))
    if shards == 1:
        save_file(stored, directory / "model.safetensors", metadata={"format": "pt"})
    else:
        names = sorted(stored)
        weight_map = {}
        for s in range(shards):
            shard = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
            part = {n: stored[n] for n in names[s::shards]}
            save_file(part, directory / shard, metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(part, shard))
        (directory / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {}, "weight_map": weight_map}))
    if tokenizer_json:
        (directory / "tokenizer.json").write_text(json.dumps({
            "version": "1.0",
            "added_tokens": [{"id": vocab["<|endoftext|>"], "content": "<|endoftext|>",
                              "special": True}],
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False,
                              "trim_offsets": True, "use_regex": True},
            "model": {"type": "BPE", "vocab": vocab, "merges": [list(m) for m in merges]}}))
    else:
        write_tokenizer_files(directory, vocab, merges)
    return config, tensors


def run_cli(argv, capsys):
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def import_run(checkpoint, run_dir, capsys):
    code, out, err = run_cli(["import-hf", str(checkpoint), "--run-dir", str(run_dir)], capsys)
    assert code == 0, err
    assert "Imported" in out
    return saving.load(run_dir)


# -- the imported model computes GPT-2 ------------------------------------------------

LAYOUTS = {
    # GPT2LMHeadModel.save_pretrained: prefixed names, tied head omitted; older files also
    # hold the attention-mask buffers.
    "prefixed-buffers": dict(),
    # GPT2Model files (no prefix), sharded, float16: exactly representable in float32.
    "plain-sharded-fp16": dict(prefix="", buffers=False, shards=2, dtype=np.float16),
    # Config fields, not special cases: an untied head, exact GELU, a wider FFN, another
    # epsilon, tokenizer.json instead of vocab.json + merges.txt.
    "untied-gelu-tokenizer_json": dict(tie_word_embeddings=False, activation_function="gelu",
                                       n_inner=80, layer_norm_epsilon=1e-3,
                                       tokenizer_json=True),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_imported_logits_equal_a_numpy_gpt2(bpe, tmp_path, capsys, layout):
    config, tensors = write_checkpoint_dir(tmp_path / "hf", bpe, **LAYOUTS[layout])
    if config["activation_function"] == "gelu":  # the reference's GELU, for this layout
        from math import erf

        import gpt2_reference

        gelu = np.vectorize(lambda x: 0.5 * x * (1 + erf(x / np.sqrt(2))))
        original, gpt2_reference.gelu_new = gpt2_reference.gelu_new, gelu
    try:
        run = import_run(tmp_path / "hf", tmp_path / "run", capsys)
        reference = Encoder(*bpe)
        for prompt in PROMPTS + [TEXT[:150]]:
            ids = reference.encode(prompt)[:config["n_positions"]]
            assert run.tokenizer.encode(prompt).numpy().tolist()[:len(ids)] == ids
            expected = forward(tensors, config, ids)  # (T, V) float64
            logits = run.model(tf.constant([ids]))[0].numpy()
            np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-4)
    finally:
        if config["activation_function"] == "gelu":
            gpt2_reference.gelu_new = original
    model_config = run.config.model
    assert (model_config.d_model, model_config.num_layers, model_config.max_length) == (32, 2, 48)
    assert model_config.tie_embeddings == (config.get("tie_word_embeddings") is not False)
    assert model_config.activation == {"gelu_new": "gelu_tanh"}.get(
        config["activation_function"], config["activation_function"])


# -- round trips ------------------------------------------------------------------------


def stored_tensors(path):
    with safe_open(str(path), framework="np") as f:
        return {name: f.get_tensor(name) for name in f.keys()}


def test_import_export_import_is_bit_identical(bpe, tmp_path, capsys):
    _, tensors = write_checkpoint_dir(tmp_path / "a", bpe)
    first = import_run(tmp_path / "a", tmp_path / "run1", capsys)
    code, out, err = run_cli(["export-hf", str(tmp_path / "run1"), "--out", str(tmp_path / "b")],
                             capsys)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [
        "config.json", "merges.txt", "model.safetensors", "tokenizer_config.json", "vocab.json"]
    second = import_run(tmp_path / "b", tmp_path / "run2", capsys)
    assert second.config == first.config
    for a, b in zip(first.model.get_weights(), second.model.get_weights(), strict=True):
        assert a.dtype == b.dtype == np.float32 and a.tobytes() == b.tobytes()
    # The exported tensors are the imported ones, bit for bit, under save_pretrained's names.
    exported = stored_tensors(tmp_path / "b" / "model.safetensors")
    assert exported.keys() == {"transformer." + name for name in tensors}
    for name, array in tensors.items():
        assert exported["transformer." + name].tobytes() == array.tobytes(), name
    # The streaming writer writes the bytes safetensors.numpy.save_file would.
    save_file(exported, tmp_path / "by_save_file.safetensors", metadata={"format": "pt"})
    assert (tmp_path / "b" / "model.safetensors").read_bytes() == \
        (tmp_path / "by_save_file.safetensors").read_bytes()
    # Same tokenizer, and a second export is the first, byte for byte.
    assert json.loads((tmp_path / "b" / "vocab.json").read_text()) == bpe[0]
    assert run_cli(["export-hf", str(tmp_path / "run2"), "--out", str(tmp_path / "c")],
                   capsys)[0] == 0
    for name in ("config.json", "model.safetensors", "vocab.json", "merges.txt"):
        assert (tmp_path / "b" / name).read_bytes() == (tmp_path / "c" / name).read_bytes()
    hf_config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert hf_config["bos_token_id"] == hf_config["eos_token_id"] == bpe[0]["<|endoftext|>"]
    assert "pad_token_id" not in hf_config


def test_export_of_a_biasless_char_run_computes_the_same_function(bpe, tmp_path, capsys):
    """The tiny preset's kind of model: no biases (exported as zeros), llm_tf's own ids."""
    tokenizer = train_tokenizer("char", TEXT)
    config = ModelConfig(vocab_size=tokenizer.vocab_size, d_model=32, num_heads=4,
                         num_layers=2, dff=64, max_length=32, dropout=0.0, use_bias=False,
                         activation="gelu_tanh")
    model = TransformerLM(config)
    model.build()
    saving.save_run(tmp_path / "run", model, tokenizer)
    code, _, err = run_cli(["export-hf", str(tmp_path / "run"), "--out", str(tmp_path / "hf")],
                           capsys)
    assert code == 2 and "tokenizer is 'char'" in err and "--weights-only" in err
    assert not (tmp_path / "hf").exists()
    code, _, err = run_cli(["export-hf", str(tmp_path / "run"), "--out", str(tmp_path / "hf"),
                            "--weights-only"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "hf").iterdir()) == ["config.json",
                                                                  "model.safetensors"]
    hf_config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert (hf_config["bos_token_id"], hf_config["eos_token_id"], hf_config["pad_token_id"]) \
        == (tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id)
    tensors = {k.removeprefix("transformer."): v
               for k, v in stored_tensors(tmp_path / "hf" / "model.safetensors").items()}
    assert not tensors["h.0.attn.c_attn.bias"].any() and not tensors["ln_f.bias"].any()
    ids = tokenizer.encode("The value of x").numpy().tolist()
    np.testing.assert_allclose(model(tf.constant([ids]))[0].numpy(),
                               forward(tensors, hf_config, ids), rtol=0, atol=1e-4)


# -- using the imported model ------------------------------------------------------------


@pytest.fixture(scope="module")
def imported(bpe, tmp_path_factory):
    directory = tmp_path_factory.mktemp("imported")
    write_checkpoint_dir(directory / "hf", bpe, resid_pdrop=0.1, embd_pdrop=0.1,
                         attn_pdrop=0.1)
    assert cli.main(["import-hf", str(directory / "hf"), "--run-dir",
                     str(directory / "run")]) == 0
    return directory / "run"


def test_cached_generation_equals_full_recompute(imported):
    run = saving.load(imported)
    tokenizer = run.tokenizer
    prompts = [tokenizer.encode(p).numpy().tolist() for p in PROMPTS] + [[]]  # [] -> BOS
    generator = Generator(run.model, tokenizer, compile="graph")
    for sampling in (Sampling(seed=0), Sampling(temperature=1.0, top_k=20, seed=7)):
        cached = generator.generate_ids(prompts, 12, sampling.temperature, sampling.top_k,
                                        sampling.top_p, sampling.seed)
        full = generate_reference(run.model, prompts, 12, sampling, eos_id=tokenizer.eos_id,
                                  pad_id=tokenizer.pad_id, bos_id=tokenizer.bos_id)
        assert cached == full
    assert run.config.model.dropout == 0.1  # resid_pdrop; generation never drops out


def test_generate_command_reads_the_imported_run(imported, capsys):
    code, out, err = run_cli(["generate", "--run", str(imported), "--prompt", "The value",
                              "--max-new-tokens", "8", "--temperature", "0"], capsys)
    assert code == 0, err
    assert out.startswith("The value") and len(out.strip()) > len("The value")


def test_evaluate_command_scores_the_imported_run(imported, tmp_path, capsys):
    (tmp_path / "held_out.txt").write_text(builtin_text()[200_000:203_000])
    code, out, err = run_cli(["evaluate", "--run", str(imported), "--data",
                              str(tmp_path / "held_out.txt"), "--batch-size", "4"], capsys)
    assert code == 0, err
    scores = json.loads(out.strip().splitlines()[-1])
    assert np.isfinite(scores["loss"]) and scores["tokens"] > 100


FRESH_PROCESS = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  the gpt2 tokenizer's regex op
    directory, prompts = json.loads(sys.argv[1])
    generator = tf.saved_model.load(directory)
    texts = generator.generate(tf.constant(prompts), 8, 0.0, 0, 1.0, 0)
    print(json.dumps({"texts": [t.decode("utf-8") for t in texts.numpy()],
                      "llm_tf": any(m.startswith("llm_tf") for m in sys.modules)}))
""")


def test_imported_model_fine_tunes_then_exports(imported, tmp_path, capsys):
    """Continued training of the imported weights with the machinery of `llm-tf train`
    (`lm_job` + `run_job`, its `initialize` hook copying the imported weights in, as a
    fine-tuning command does), on text in the model's own tokenization; the new run exports
    as a SavedModel (loaded in a process without llm_tf) and back to Hugging Face's format."""
    import io

    from llm_tf.config import DataConfig, TrainConfig
    from llm_tf.data import load_corpus
    from llm_tf.evaluation import evaluate_language_model
    from llm_tf.rundir import RunDir
    from llm_tf.training.run import lm_job, run_job

    base = saving.load(imported)
    (tmp_path / "text.txt").write_text(TEXT[:6_000])
    data = DataConfig(source=str(tmp_path / "text.txt"), tokenizer="gpt2", context_length=32,
                      batch_size=8, val_fraction=0.2)
    train = TrainConfig(steps=40, learning_rate=3e-3, warmup_steps=0, schedule="constant",
                        weight_decay=0.0, log_interval=10, eval_interval=20, sample_length=0)
    job = lm_job(base.config.model, data, train, base.tokenizer, load_corpus(data.source))
    job.initialize = lambda model: model.set_weights(base.model.get_weights())
    tuned = run_job(job, RunDir.create(tmp_path / "tuned"), stream=io.StringIO(), tty=False)
    (tmp_path / "unseen.txt").write_text(TEXT[6_000:9_000])
    unseen = load_corpus(str(tmp_path / "unseen.txt"))
    before = evaluate_language_model(base.model, base.tokenizer, unseen, 32, 8)["loss"]
    after = evaluate_language_model(tuned.model, base.tokenizer, unseen, 32, 8)["loss"]
    assert after < 0.9 * before, (before, after)  # measured: 6.82 -> 5.23 nats
    # It started from the imported weights: position rows past the 32-token windows get no
    # gradient (and no weight decay), so they are still the checkpoint's, bit for bit.
    wpe = lambda model: model.decoder.embedding.position_embedding.embeddings.numpy()  # noqa
    np.testing.assert_array_equal(wpe(tuned.model)[32:], wpe(base.model)[32:])
    assert not np.array_equal(wpe(tuned.model)[:32], wpe(base.model)[:32])

    code, out, err = run_cli(["export", str(tmp_path / "tuned"), "--no-xla"], capsys)
    assert code == 0, err
    expected = Generator(tuned.model, base.tokenizer, compile="graph").generate(PROMPTS, 8)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS,
         json.dumps([str(tmp_path / "tuned" / "saved_model"), PROMPTS])],
        capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == {"texts": expected, "llm_tf": False}
    code, _, err = run_cli(["export-hf", str(tmp_path / "tuned"), "--out",
                            str(tmp_path / "tuned_hf")], capsys)
    assert code == 0, err
    exported = stored_tensors(tmp_path / "tuned_hf" / "model.safetensors")
    np.testing.assert_array_equal(exported["transformer.wpe.weight"], wpe(tuned.model))



def test_a_classifier_on_the_imported_model_pools_its_real_tokens(imported, tmp_path, capsys):
    """GPT-2 pads with its end-of-text id and has a real token at id 0 (the byte "!"), so
    the classifier must pool with the tokenizer's padding id, both as `llm-tf finetune`
    trains it and as `llm_tf.load` rebuilds it for `evaluate` and `export`: a text's
    probabilities are the same alone and padded in a batch with longer ones."""
    from llm_tf.data import encode_texts

    texts = ["!", "! lunch at noon", "win cash now !!", "the agenda of the meeting",
             "!cash", "notes from the project review, thanks"]
    lines = [f"{'spam' if 'cash' in t or t.startswith('!') else 'ham'}\t{t}" for t in texts * 4]
    data = tmp_path / "mail.tsv"
    data.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    code, _, err = run_cli(["finetune", "--from", str(imported), "--task", "classify",
                            "--data", str(data), "--run-dir", str(tmp_path / "clf"),
                            "--steps=2", "--batch_size=8", "--no-export"], capsys)
    assert code == 0, err
    run = saving.load(tmp_path / "clf")
    assert run.tokenizer.pad_id != 0 and run.model.pad_id == run.tokenizer.pad_id
    padded, _ = encode_texts(run.tokenizer, texts, 32)
    assert (padded == 0).any() and (padded == run.tokenizer.pad_id).any()  # both ids occur
    together = run.model(padded).numpy()
    alone = [run.model(run.tokenizer.encode([text]).to_tensor()).numpy()[0] for text in texts]
    np.testing.assert_allclose(together, np.stack(alone), atol=1e-5)

# -- bad input: one line, exit code 2 ----------------------------------------------------


def _without(name):
    def change(directory):
        (directory / name).unlink()
    return change


def _edit_config(**changes):
    def change(directory):
        config = json.loads((directory / "config.json").read_text())
        config.update(changes)
        (directory / "config.json").write_text(json.dumps(config))
    return change


def _rewrite_tensors(edit):
    def change(directory):
        tensors = stored_tensors(directory / "model.safetensors")
        edit(tensors)
        save_file(tensors, directory / "model.safetensors")
    return change


def _truncate(directory):
    path = directory / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])


BAD_CHECKPOINTS = {
    "missing tensor": (_rewrite_tensors(lambda t: t.pop("transformer.h.1.mlp.c_fc.bias")),
                       "no tensor 'h.1.mlp.c_fc.bias'"),
    "shape mismatch": (_rewrite_tensors(lambda t: t.update({
        "transformer.wpe.weight": np.zeros((40, 32), np.float32)})),
        r"'transformer.wpe.weight' has shape \(40, 32\).*\(48, 32\)"),
    "unknown tensor": (_rewrite_tensors(lambda t: t.update({
        "score.weight": np.zeros((2, 32), np.float32)})), "does not have: 'score.weight'"),
    "unsupported model_type": (_edit_config(model_type="llama"), "model_type 'llama'"),
    "unsupported architecture": (_edit_config(architectures=["GPT2ForSequenceClassification"]),
                                 "GPT2ForSequenceClassification"),
    "unsupported activation": (_edit_config(activation_function="silu"),
                               "activation_function 'silu'"),
    "unsupported attention scaling": (_edit_config(scale_attn_by_inverse_layer_idx=True),
                                      "scale_attn_by_inverse_layer_idx"),
    "invalid config values": (_edit_config(n_head=5), "d_model"),
    "vocabulary size mismatch": (_edit_config(vocab_size=1000), "vocab_size=1000"),
    "corrupt file": (lambda d: (d / "model.safetensors").write_bytes(b"not a safetensors file"),
                     "not a readable safetensors file"),
    "truncated file": (_truncate, "not a readable safetensors file"),
    "no weights": (_without("model.safetensors"), "holds no model.safetensors"),
    "missing merges": (_without("merges.txt"), "merges.txt' does not exist"),
    "no tokenizer": (lambda d: (_without("merges.txt")(d), _without("vocab.json")(d)),
                     "holds no tokenizer"),
    "missing config": (_without("config.json"), "config.json' does not exist"),
    "broken config": (lambda d: (d / "config.json").write_text("{"), "not valid JSON"),
}


@pytest.fixture(scope="module")
def good_checkpoint(bpe, tmp_path_factory):
    directory = tmp_path_factory.mktemp("good") / "hf"
    write_checkpoint_dir(directory, bpe, buffers=False)
    return directory


@pytest.mark.parametrize("case", list(BAD_CHECKPOINTS))
def test_bad_checkpoints_are_one_line_errors(good_checkpoint, tmp_path, capsys, case):
    break_it, message = BAD_CHECKPOINTS[case]
    directory = tmp_path / "hf"
    shutil.copytree(good_checkpoint, directory)
    break_it(directory)
    code, out, err = run_cli(["import-hf", str(directory), "--run-dir", str(tmp_path / "run")],
                             capsys)
    assert code == 2, (out, err)
    assert err.startswith("llm-tf: error: ") and err.count("\n") == 1, err
    assert __import__("re").search(message, err), err
    assert not (tmp_path / "run" / "config.json").exists()


def test_bad_export_requests_are_one_line_errors(imported, tmp_path, capsys):
    # A model GPT-2's format cannot express: the field is named.
    tokenizer = train_tokenizer("char", "abc")
    post_ln = TransformerLM(ModelConfig(vocab_size=tokenizer.vocab_size, d_model=16,
                                        num_heads=2, num_layers=1, dff=32, max_length=8,
                                        norm_placement="post"))
    post_ln.build()
    saving.save_run(tmp_path / "post", post_ln, tokenizer)
    cases = [(["import-hf", str(tmp_path)], "--run-dir"),
             (["export-hf", str(imported)], "--out"),
             (["export-hf", str(tmp_path / "post"), "--out", str(tmp_path / "x"),
               "--weights-only"], "norm_placement='post'"),
             (["export-hf", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")],
              "does not exist"),
             (["import-hf", str(tmp_path / "nowhere"), "--run-dir", str(tmp_path / "r")],
              "does not exist")]
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    cases.append((["export-hf", str(imported), "--out", str(tmp_path / "full")],
                  "exists and is not empty"))
    cases.append((["import-hf", str(tmp_path), "--run-dir", str(imported)], "holds a run"))
    for argv, message in cases:
        code, out, err = run_cli(argv, capsys)
        assert code == 2 and err.count("\n") == 1 and message in err, (argv, err)
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
