"""`python -m llm_tf.train [options]`: the same as `llm-tf train` (see llm_tf/training/cli.py)."""

import sys

from llm_tf.training.cli import main

if __name__ == "__main__":
    sys.exit(main())
