"""Fine-tuning data: tab-separated files, labels, prompt masking, resumable batches, scores."""

import numpy as np
import pytest

from llm_tf.config import FinetuneConfig
from llm_tf.data import (
    DataError,
    encode_instructions,
    encode_texts,
    ordered_batches,
    read_instructions,
    read_labelled_texts,
    shuffled_batches,
    split_held_out,
)
from llm_tf.evaluation import classification_scores
from llm_tf.tokenizers import IGNORE_LABEL, CharTokenizer

TOKENIZER = CharTokenizer.train("abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ:\n")


def write(tmp_path, text, name="data.tsv"):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return str(path)


def test_labels_are_learned_sorted_and_every_line_is_read(tmp_path):
    path = write(tmp_path, "\ufeffspam\tWIN NOW\r\nham\tRe: lunch\n\n ham \tsee\tyou\n")
    examples = read_labelled_texts(path)
    assert examples.names == ("ham", "spam")
    assert examples.texts == ("WIN NOW", "Re: lunch", "see\tyou")  # split at the first tab
    assert examples.labels.tolist() == [1, 0, 0]
    assert examples.counts().tolist() == [2, 1] and examples.majority() == pytest.approx(2 / 3)
    assert "ham 2 / spam 1, majority 66.7%" == examples.describe()


@pytest.mark.parametrize("text, message", [
    ("ham\tok\nspam without a tab\n", r"data.tsv:2: no tab: expected label<TAB>text"),
    ("ham\tok\n\tno label\n", r"data.tsv:2: empty label"),
    ("ham\tok\nspam\t   \n", r"data.tsv:2: empty text"),
    ("ham\tone\nham\ttwo\n", r"every line has the label 'ham': .* at least two classes"),
    (b"ham\tok\nspam\t\xff\n", r"data.tsv:2: not valid UTF-8"),
    ("\n\n", r"holds no label<TAB>text line"),
])
def test_bad_lines_are_named(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        read_labelled_texts(write(tmp_path, text))


def test_an_evaluation_label_unseen_in_training_is_refused(tmp_path):
    path = write(tmp_path, "ham\tok\neggs\tno\n", "test.tsv")
    with pytest.raises(DataError, match=r"test.tsv:2: label 'eggs' was not seen in training"):
        read_labelled_texts(path, names=("ham", "spam"))


def test_texts_keep_their_first_tokens_and_are_right_padded():
    ids, cut = encode_texts(TOKENIZER, ["Subject: hi there", "ab"], 8)
    assert cut == 1
    assert TOKENIZER.decode(ids[0]).numpy().decode() == "Subject:"
    assert ids[1].tolist()[2:] == [TOKENIZER.pad_id] * 6


def test_instruction_labels_cover_the_response_and_eos_only(tmp_path):
    pairs = read_instructions(write(tmp_path, "abc\tCBA\nlonger prompt here\tXY\n"))
    template = FinetuneConfig(from_run="x", prompt_template="Q: {prompt}\nA: ")
    encoded = encode_instructions(TOKENIZER, pairs, template.format_prompt, 16)
    x, y = encoded.x, encoded.y
    prompt = TOKENIZER.encode("Q: abc\nA: ").numpy().tolist()
    answer = TOKENIZER.encode("CBA").numpy().tolist() + [TOKENIZER.eos_id]
    sequence = prompt + answer
    assert x[0, :len(sequence) - 1].tolist() == sequence[:-1]
    labelled = y[0] != IGNORE_LABEL
    assert y[0, labelled].tolist() == answer  # the answer and its EOS, nothing else
    assert np.flatnonzero(labelled)[0] == len(prompt) - 1  # predicted from the prompt's end
    # The second prompt does not fit: it loses its start, the answer stays whole.
    assert encoded.prompts_cut == 1 and encoded.responses_cut == 0
    second = TOKENIZER.encode("Q: longer prompt here\nA: XY").numpy().tolist()
    assert x[1].tolist() == second[-16:]
    assert y[1, y[1] >= 0].tolist() == TOKENIZER.encode("XY").numpy().tolist() + [3]
    assert encoded.response_tokens == 4 + 3


def test_shuffled_batches_resume_at_any_step_and_visit_every_example_per_epoch():
    ids = np.arange(10, dtype=np.int32)[:, None] * np.ones((1, 3), np.int32)
    labels = np.arange(10, dtype=np.int32)
    straight = [b[1].numpy().tolist() for b in shuffled_batches((ids, labels), 4, 7).take(6)]
    resumed = [b[1].numpy().tolist() for b in shuffled_batches((ids, labels), 4, 7, 3).take(3)]
    assert resumed == straight[3:]
    flat = sum(straight, [])
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))
    assert flat[:10] != flat[10:20]  # a new order each epoch


def test_ordered_batches_hold_every_example_once_then_filler():
    ids = np.arange(5, dtype=np.int32)[:, None] + np.zeros((1, 2), np.int32)
    batches = list(ordered_batches((ids, np.arange(5, dtype=np.int32)), 2, (0, IGNORE_LABEL)))
    labels = np.concatenate([b[1].numpy() for b in batches])
    assert labels.tolist() == [0, 1, 2, 3, 4, IGNORE_LABEL]
    assert all(b[0].shape == (2, 2) for b in batches)


def test_held_out_split_is_seeded_and_keeps_file_order(tmp_path):
    path = write(tmp_path, "".join(f"{'ab'[i % 2]}\ttext {i}\n" for i in range(20)))
    examples = read_labelled_texts(path)
    train, held = split_held_out(examples, 0.25, seed=3)
    again, _ = split_held_out(examples, 0.25, seed=3)
    assert len(held) == 5 and len(train) == 15 and train.texts == again.texts
    assert set(train.texts) | set(held.texts) == set(examples.texts)
    assert list(held.texts) == sorted(held.texts, key=examples.texts.index)


def test_scores_match_a_hand_count():
    labels = [0, 0, 0, 0, 1, 1, 2]
    predictions = [0, 0, 1, 0, 1, 0, 2]
    scores = classification_scores(labels, predictions, 3)
    # class 0: TP 3, FP 1, FN 1 -> 6/8; class 1: TP 1, FP 1, FN 1 -> 2/4; class 2: 1.
    assert scores["accuracy"] == pytest.approx(5 / 7)
    assert scores["macro_f1"] == pytest.approx((0.75 + 0.5 + 1.0) / 3)
    majority = classification_scores([0] * 678 + [1] * 322, [0] * 1000, 2)
    assert majority["accuracy"] == pytest.approx(0.678)
    assert majority["macro_f1"] == pytest.approx(0.404, abs=1e-3)


def test_a_prompt_template_needs_its_placeholder_once():
    assert FinetuneConfig(from_run="x", prompt_template="<{prompt}>").format_prompt("a{b}") == \
        "<a{b}>"
