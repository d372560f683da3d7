"""`python -m llm_tf.train [options]`: the same as `llm-tf train` (llm_tf/commands/train.py)."""

import sys

from llm_tf.commands.train import main

if __name__ == "__main__":
    sys.exit(main())
