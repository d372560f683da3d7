"""Initializer helpers.

A Keras 3 initializer *instance* draws its seed once, when it is made, so calling
the same instance for two variables gives them identical values (Q, K and V
projections that start equal, for instance). Every sublayer therefore receives
its own clone.
"""

import keras


def clone_initializer(initializer):
    """A fresh instance of `initializer` (an unseeded one draws a new seed)."""
    initializer = keras.initializers.get(initializer)
    return initializer.__class__.from_config(initializer.get_config())
