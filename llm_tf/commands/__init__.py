"""The `llm-tf` commands, one module each; `llm_tf.cli` dispatches to them.

    train      llm_tf/commands/train.py      pre-train a language model, or train a translator
    generate   llm_tf/commands/generate.py   text from a run directory or a SavedModel
    export     llm_tf/commands/export.py     a run directory as a SavedModel
    prepare    llm_tf/commands/prepare.py    a corpus tokenized once into shards
    evaluate   llm_tf/commands/evaluate.py   a run scored on held-out data (one JSON line)
    translate  llm_tf/commands/translate.py  sentences translated by a translation run

A command is where the library's parts meet: it parses and checks the command
line (before TensorFlow loads, where it can), builds the run directory once, and
hands the pieces to the library (`llm_tf.training.train` gets its sampler from
here, and the export happens here after training). Nothing in the library imports
a command.
"""
