"""pytest settings for the notebooks: run them in their small ("quick") settings.

Run every notebook top to bottom, on CPU and offline (from the repository root):

    python -m pytest --nbmake notebooks/

Each notebook reads `LLM_TF_NOTEBOOK_QUICK` in its "Parameters" cell: "1" selects the small
settings (a few hundred steps, each notebook well under two minutes on 2 cores); unset or "0"
runs the full settings that the committed outputs show. The Jupyter kernel that nbmake starts
inherits this process's environment, so setting the variable here is enough. Anything already
set wins: `LLM_TF_NOTEBOOK_QUICK=0 python -m pytest --nbmake notebooks/` runs the full settings.
"""

import os

os.environ.setdefault("LLM_TF_NOTEBOOK_QUICK", "1")
# Quiet TensorFlow's C++ logging in the kernels (as the notebooks' first cell does).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
