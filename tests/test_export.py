"""SavedModel export: same strings as in memory, loadable without llm_tf, clear errors."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import tensorflow as tf
from test_generation import TEXT, scrambled_model

from llm_tf import export, saving
from llm_tf.commands import export as export_cli
from llm_tf.commands import generate as generate_cli
from llm_tf.generation import Generator
from llm_tf.tokenizers import train_tokenizer

PROMPTS = ["hello", "你好世界", "", "ça va? 🙂 wörld", "héllo " * 6]  # the last one is cut
GREEDY = dict(temperature=0.0, top_k=0, top_p=1.0, seed=0)
SAMPLED = dict(temperature=0.9, top_k=10, top_p=0.95, seed=1234)
MAX_NEW = 12

# Runs in a fresh interpreter that refuses to import llm_tf.
FRESH_PROCESS = textwrap.dedent("""
    import importlib.abc, json, sys

    class RefuseLlmTf(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "llm_tf" or name.startswith("llm_tf."):
                raise ImportError("the SavedModel must not need llm_tf: " + name)

    sys.meta_path.insert(0, RefuseLlmTf())
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the README asset says: import it first)

    directory, prompts, max_new, greedy, sampled = json.loads(sys.argv[1])
    generator = tf.saved_model.load(directory)
    run = lambda kw: [t.decode("utf-8") for t in generator.generate(
        tf.constant(prompts), max_new, kw["temperature"], kw["top_k"], kw["top_p"],
        kw["seed"]).numpy()]
    signature = generator.signatures["generate"]
    by_signature = signature(prompts=tf.constant(prompts), max_new_tokens=tf.constant(max_new),
                             temperature=tf.constant(0.0), top_k=tf.constant(0),
                             top_p=tf.constant(1.0), seed=tf.constant(0))["texts"]
    print(json.dumps({
        "greedy": run(greedy), "sampled": run(sampled),
        "signature": [t.decode("utf-8") for t in by_signature.numpy()],
        "max_length": int(generator.max_length.numpy()),
        "llm_tf_imported": any(m.startswith("llm_tf") for m in sys.modules),
        "readme": open(generator.readme.asset_path.numpy().decode()).read(),
    }))
""")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A run directory (char tokenizer, tiny scrambled model) exported by `llm-tf export RUN`."""
    tokenizer = train_tokenizer("char", TEXT)
    model = scrambled_model(tokenizer.vocab_size)
    run_dir = tmp_path_factory.mktemp("export") / "run"
    saving.save_run(run_dir, model, tokenizer)
    assert export_cli.main([str(run_dir)]) == 0
    return run_dir, model, tokenizer


@pytest.fixture(scope="module")
def in_memory(exported):
    _, model, tokenizer = exported
    return Generator(model, tokenizer, compile="xla")


@pytest.fixture(scope="module")
def expected(in_memory):
    """In-memory greedy and sampled continuations of PROMPTS (one XLA compilation, B = 5)."""
    with pytest.warns(UserWarning, match="cut from the left"):
        return {"greedy": in_memory.generate(PROMPTS, MAX_NEW, **GREEDY),
                "sampled": in_memory.generate(PROMPTS, MAX_NEW, **SAMPLED)}


@pytest.fixture(scope="module")
def loaded(exported):
    return export.load_saved_model(exported[0] / "saved_model")


def test_the_export_sits_in_the_run_directory_with_its_readme(exported):
    out = exported[0] / "saved_model"
    assert (out / "saved_model.pb").is_file()
    readme = (out / "assets" / "README.txt").read_text(encoding="utf-8")
    assert "import tensorflow_text" in readme and "BEFORE LOADING" in readme
    assert json.loads((out / "assets" / "model_config.json").read_text())["max_length"] == 32


def test_fresh_process_without_llm_tf_gives_the_same_strings(exported, expected, tmp_path):
    run_dir, _, _ = exported
    expected_greedy, expected_sampled = expected["greedy"], expected["sampled"]
    reloaded = saving.load(run_dir)
    with pytest.warns(UserWarning, match="cut from the left"):
        reloaded_greedy = Generator(reloaded.model, reloaded.tokenizer).generate(
            PROMPTS, MAX_NEW, **GREEDY)
    assert reloaded_greedy == expected_greedy
    assert any(not t.isascii() for t in expected_greedy) and len(set(expected_greedy)) >= 4

    argument = json.dumps([str(run_dir / "saved_model"), PROMPTS, MAX_NEW, GREEDY, SAMPLED])
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ""}
    result = subprocess.run([sys.executable, "-c", FRESH_PROCESS, argument], cwd=tmp_path,
                            env=environment, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "prompt(s) cut from the left to 20 tokens" in result.stderr
    fresh = json.loads(result.stdout.strip().splitlines()[-1])
    assert fresh["llm_tf_imported"] is False
    assert fresh["greedy"] == expected_greedy
    assert fresh["signature"] == expected_greedy
    assert fresh["sampled"] == expected_sampled
    assert fresh["max_length"] == 32
    assert "import tensorflow_text" in fresh["readme"]


def test_saved_model_cli_lists_the_signatures(exported):
    result = subprocess.run(
        [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "show", "--dir",
         str(exported[0] / "saved_model"), "--all"],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, capture_output=True, text=True,
        timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for name in export.SIGNATURES:
        assert f"signature_def['{name}']" in out
    for name in ("prompts", "max_new_tokens", "temperature", "top_k", "top_p", "seed",
                 "token_ids", "texts"):
        assert f"['{name}']" in out, name
    assert "dtype: DT_STRING" in out


def test_session_based_loaders_run_the_string_signature(exported, expected):
    """`saved_model_cli run` loads the SavedModel the way TF Serving and the C++ API do
    (a v1 session), not through `tf.saved_model.load`."""
    result = subprocess.run(
        [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "run", "--dir",
         str(exported[0] / "saved_model"), "--tag_set", "serve", "--signature_def", "generate",
         "--input_exprs", f"prompts=[{PROMPTS[0]!r}];max_new_tokens={MAX_NEW};"
         "temperature=0.0;top_k=0;top_p=1.0;seed=0"],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, capture_output=True, text=True,
        timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Result for output key texts" in result.stdout
    assert repr(expected["greedy"][0].encode("utf-8")) in result.stdout


def test_token_signature_matches_in_memory_ids_and_ignores_pad(loaded, in_memory):
    # Five rows, as everywhere in this file: each batch size is one XLA compilation.
    prompts = [[5, 6, 7, 8], [9], [10, 11], [12], [13, 14, 15]]
    padded = tf.constant([[5, 6, 7, 8], [0, 0, 0, 9], [10, 11, 0, 0], [0, 12, 0, 0],
                          [13, 14, 15, 0]])  # PAD (0) anywhere is ignored
    out = loaded.generate_ids(padded, MAX_NEW, 1.0, 0, 1.0, 77).numpy()
    assert out.shape == (5, MAX_NEW)
    expected = in_memory.generate_ids(prompts, MAX_NEW, temperature=1.0, seed=77)
    for row, ids in zip(out.tolist(), expected):
        assert row[:len(ids)] == ids and all(t == 0 for t in row[len(ids):])
    assert loaded.generate(tf.constant(PROMPTS[:4] + ["a"]), 0, 0.0, 0, 1.0, 0).numpy().tolist() \
        == [b""] * 5


@pytest.mark.parametrize("arguments, message", [
    ((8, -0.5, 0, 1.0), "`temperature` must be a number >= 0"),
    ((8, 1.0, -1, 1.0), "`top_k` must be an integer >= 0"),
    ((8, 1.0, 0, 0.0), r"`top_p` must be a number in \(0, 1\]"),
    ((8, 1.0, 0, 1.5), r"`top_p` must be a number in \(0, 1\]"),
    ((-1, 1.0, 0, 1.0), r"`max_new_tokens` must be an integer in \[0, 31\]"),
    ((32, 1.0, 0, 1.0), r"`max_new_tokens` must be an integer in \[0, 31\]"),
])
def test_bad_arguments_to_the_saved_model_name_the_argument(loaded, arguments, message):
    max_new_tokens, temperature, top_k, top_p = arguments
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        loaded.generate(tf.constant(["hello"]), max_new_tokens, temperature, top_k, top_p, 0)


def test_token_ids_outside_the_vocabulary_are_rejected_by_the_saved_model(loaded):
    vocab_size = int(loaded.vocab_size.numpy())
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"< vocab_size={vocab_size}"):
        loaded.generate_ids(tf.constant([[5, vocab_size]]), 4, 0.0, 0, 1.0, 0)
    with pytest.raises(tf.errors.InvalidArgumentError, match="`token_ids` must be >= 0"):
        loaded.generate_ids(tf.constant([[5, -2]]), 4, 0.0, 0, 1.0, 0)


def test_llm_tf_generate_from_the_saved_model_and_the_run(exported, expected, capsys):
    run_dir = exported[0]
    argv = ["--saved-model", str(run_dir / "saved_model"), "--max-new-tokens", str(MAX_NEW),
            "--seed", str(SAMPLED["seed"]), "--temperature", str(SAMPLED["temperature"]),
            "--top-k", str(SAMPLED["top_k"]), "--top-p", str(SAMPLED["top_p"])]
    for prompt in PROMPTS:
        argv += ["--prompt", prompt]
    assert generate_cli.main(argv) == 0
    out = capsys.readouterr().out
    assert out == "".join(f"=== sample 1/1 of prompt {i + 1} ===\n{prompt}{text}\n"
                          for i, (prompt, text) in enumerate(zip(PROMPTS, expected["sampled"])))
    # From the run directory, one prompt: streamed, greedy is the same text.
    assert generate_cli.main(["--run", str(run_dir), "--prompt", PROMPTS[1], "--max-new-tokens",
                              str(MAX_NEW), "--temperature", "0"]) == 0
    assert capsys.readouterr().out == PROMPTS[1] + expected["greedy"][1] + "\n"


def test_llm_tf_generate_from_a_saved_model_on_another_filesystem(exported, expected, capsys):
    """`--saved-model gs://...` was refused by a local check (ram:// stands in for gs://)."""
    local = str(exported[0] / "saved_model")
    remote = "ram://exports/saved_model"
    for directory, _, files in tf.io.gfile.walk(local):
        into = remote + directory[len(local):]
        tf.io.gfile.makedirs(into)
        for name in files:
            tf.io.gfile.copy(os.path.join(directory, name), f"{into}/{name}", overwrite=True)
    assert generate_cli.main(["--saved-model", remote, "--prompt", PROMPTS[1],
                              "--max-new-tokens", str(MAX_NEW), "--temperature", "0"]) == 0, \
        capsys.readouterr().err
    assert capsys.readouterr().out == PROMPTS[1] + expected["greedy"][1] + "\n"


@pytest.mark.parametrize("argv, message", [
    (["--run", "RUN", "--temperature", "-1"], "`temperature` must be"),
    (["--run", "RUN", "--top-p", "2"], "`top_p` must be"),
    (["--run", "RUN", "--top-k", "-2"], "`top_k` must be"),
    (["--run", "RUN", "--max-new-tokens", "-3"],
     r"`max_new_tokens` must be an integer in \[0, 31\]"),
    (["--run", "RUN", "--max-new-tokens", "40"],
     r"`max_new_tokens` must be an integer in \[0, 31\]"),
    (["--run", "NOWHERE"], "Run directory .* does not exist"),
    (["--saved-model", "RUN"], "is not a SavedModel directory"),
    (["--saved-model", "NOWHERE"], "SavedModel directory .* does not exist"),
])
def test_llm_tf_generate_bad_input_is_one_line_and_exit_code_2(exported, argv, message,
                                                               capsys):
    argv = [str(exported[0]) if a == "RUN" else a for a in argv]
    assert generate_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("llm-tf: error: ") and err.count("\n") == 1
    assert __import__("re").search(message, err), err


def test_export_errors(exported, tmp_path, capsys):
    run_dir, model, _ = exported
    assert export_cli.main([str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
    # Not written to a local folder "ram:/exports/x" (a remote path folded by pathlib).
    assert export_cli.main([str(run_dir), "ram://exports/x"]) == 2
    assert "must be a local path, not 'ram://exports/x'" in capsys.readouterr().err
    assert not os.path.exists("ram:")
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="exists and is not a SavedModel"):
        export.export_run(run_dir, tmp_path / "precious")
    assert (tmp_path / "precious" / "notes.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="vocab_size=5 but the model was built for "
                                         f"vocab_size={model.config.vocab_size}"):
        export.GenerationModule(model, train_tokenizer("char", "a"))
    with pytest.raises(FileNotFoundError):
        export.load_saved_model(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="not a SavedModel directory"):
        export.load_saved_model(run_dir)
