"""`python -m llm_tf ...` = the `llm-tf ...` console script (for a checkout not pip-installed)."""

import sys

from llm_tf.cli import main

if __name__ == "__main__":
    sys.exit(main())
