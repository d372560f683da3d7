"""`llm-tf`'s shared plumbing: TensorFlow's load-time notices kept off the commands' output."""

import importlib

import pytest
from training_util import python_env, run_python

from llm_tf.cli import COMMANDS
from llm_tf.commands.common import LOAD_TIME_NOTICES


def test_stderr_without_drops_matching_lines_and_forwards_the_rest():
    code = (
        "import os, sys\n"
        "from llm_tf.commands.common import stderr_without\n"
        "with stderr_without(['noise']):\n"
        "    os.write(2, b'first kept\\nsome noise here\\n')\n"
        "    print('second kept', file=sys.stderr)\n"
        "    os.write(2, b'unterminated kept')\n"
        "os.write(2, b'\\nnoise after the block is not filtered\\n')\n")
    err = run_python(code).stderr
    assert err == ("first kept\nsecond kept\nunterminated kept\n"
                   "noise after the block is not filtered\n")


@pytest.mark.parametrize("user_level, notices_expected", [(None, False), ("0", True)])
def test_import_tensorflow_hides_load_time_notices_unless_the_user_set_a_level(
        user_level, notices_expected):
    env = python_env()
    del env["TF_CPP_MIN_LOG_LEVEL"]
    if user_level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = user_level  # the user's choice wins
    code = ("from llm_tf.commands.common import import_tensorflow, quiet_tensorflow\n"
            "quiet_tensorflow()\n"
            "tf = import_tensorflow()\n"
            "print(tf.constant(2) * 3)\n")
    done = run_python(code, env=env)
    assert "tf.Tensor(6" in done.stdout
    # The counterpart run (user level 0) proves the notices exist in this TensorFlow build.
    assert any(notice in done.stderr for notice in LOAD_TIME_NOTICES) is notices_expected, \
        done.stderr


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_reports_an_unknown_option_in_one_line(command, capsys):
    main = importlib.import_module(COMMANDS[command][0]).main
    assert main(["--no-such-option"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("llm-tf: error:") and "\n" not in err, err
