"""Argument checks shared by configs and layers.

Every failure is a `ValueError` that names the argument and echoes the value it
received (keras-hub's manners), raised when the object is made rather than three
calls deep. No TensorFlow import here, so configs stay cheap to validate.
"""

from typing import Any


def require(condition: bool, name: str, value: Any, expectation: str) -> None:
    if not condition:
        raise ValueError(f"`{name}` must be {expectation}. Received: {name}={value!r}")


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_positive(name: str, value: Any) -> None:
    require(is_int(value) and value > 0, name, value, "a positive integer")


def check_non_negative(name: str, value: Any) -> None:
    require(is_int(value) and value >= 0, name, value, "a non-negative integer")


def check_rate(name: str, value: Any) -> None:
    require(is_number(value) and 0 <= value < 1, name, value, "a rate in [0, 1)")


def check_choice(name: str, value: Any, choices) -> None:
    require(value in choices, name, value, f"one of {', '.join(map(repr, choices))}")


def check_divisible(d_model: Any, num_heads: Any) -> None:
    check_positive("d_model", d_model)
    check_positive("num_heads", num_heads)
    if d_model % num_heads:
        raise ValueError("`d_model` must be divisible by `num_heads`. "
                         f"Received: d_model={d_model}, num_heads={num_heads}")


def check_rotary_head_width(d_model: Any, num_heads: Any) -> None:
    """Rotary encoding rotates pairs of a head's coordinates: the head width must be even."""
    if (d_model // num_heads) % 2:
        raise ValueError("Rotary position encoding needs an even head width d_model / num_heads. "
                         f"Received: d_model={d_model}, num_heads={num_heads}")
