"""`--field=value` on the command line: any field of the run's config objects, checked.

nanoGPT's style of configuration, without its `exec`: every field of the configs a
command builds (`ModelConfig`, `DataConfig`, `TrainConfig`, ...) can be set as
`--field=value` or `--field value`; the text is converted to the field's type, an
unknown name gets the close matches, and a field that two configs share sets both.
Used by `llm-tf train` and by the commands that train from another run.
"""

from __future__ import annotations

import dataclasses
import difflib

from llm_tf.commands.common import UsageError
from llm_tf.config import DataConfig, ModelConfig, TrainConfig

# The configs of a training run, by their key in config.json.
CONFIGS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def field_index(classes: dict = CONFIGS) -> dict[str, list[tuple[str, dataclasses.Field]]]:
    """field name -> [(config name, field)], for every field of the config `classes`."""
    index: dict = {}
    for config_name, cls in classes.items():
        for field in dataclasses.fields(cls):
            index.setdefault(field.name, []).append((config_name, field))
    return index


def convert(name: str, text: str, kind: str):
    """`text` as the field's type (`kind`: 'int', 'float', 'bool' or 'str'), or a UsageError."""
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
    except ValueError:
        raise UsageError(f"--{name} expects {'an integer' if kind == 'int' else 'a number'}. "
                         f"Received: --{name}={text!r}") from None
    if kind == "bool":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise UsageError(f"--{name} expects true or false. Received: --{name}={text!r}")
    return text


def parse_overrides(tokens: list[str]) -> dict[str, str]:
    """['--a=1', '--b', '2'] -> {'a': '1', 'b': '2'}; anything else is a UsageError."""
    overrides, i = {}, 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--") or token == "--":
            raise UsageError(f"unexpected argument {token!r}; options look like --field=value.")
        key, has_value, value = token[2:].partition("=")
        if not has_value:
            if i + 1 >= len(tokens) or tokens[i + 1].startswith("--"):
                raise UsageError(f"--{key} needs a value: --{key}=VALUE.")
            value, i = tokens[i + 1], i + 1
        overrides[key.replace("-", "_")] = value
        i += 1
    return overrides


def apply_overrides(configs: dict, overrides: dict[str, str], extra_names=(),
                    classes: dict = CONFIGS, command: str = "llm-tf train") -> dict:
    """Returns new configs with `overrides` applied, each value converted and checked.

    Args:
        configs: {config name: config object}, one per key of `classes`.
        overrides: {field: text} from `parse_overrides`.
        extra_names: the command's own options, offered as close matches too.
        classes: {config name: config class} that the fields belong to.
        command: named in the hint of an unknown-option error.
    """
    index = field_index(classes)
    values = typed_values(overrides, extra_names, classes, command)
    changes: dict = {name: {} for name in classes}
    for key, value in values.items():
        for config_name, _ in index[key]:
            changes[config_name][key] = value
    return {name: configs[name].replace(**changes[name]) if changes[name] else configs[name]
            for name in classes}


def typed_values(overrides: dict[str, str], extra_names=(), classes: dict = CONFIGS,
                 command: str = "llm-tf train") -> dict:
    """{field: value converted to the field's type}; an unknown field is a UsageError naming
    the close matches (arguments as `apply_overrides`)."""
    index = field_index(classes)
    values = {}
    for key, text in overrides.items():
        if key not in index:
            known = sorted(index) + [n.replace("_", "-") for n in extra_names]
            close = difflib.get_close_matches(key, known, n=3)
            hint = f" Did you mean {', '.join('--' + c for c in close)}?" if close else ""
            raise UsageError(f"unknown option --{key}.{hint} ({command} --help lists them)")
        values[key] = convert(key, text, index[key][0][1].type)
    return values


def fields_help(classes: dict = CONFIGS) -> str:
    """The --help epilog: every settable field, its configs and type."""
    return "config fields (set any as --field=value):\n" + "\n".join(
        f"  {name} ({'/'.join(c for c, _ in owners)}: {owners[0][1].type})"
        for name, owners in sorted(field_index(classes).items()))
