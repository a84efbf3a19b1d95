"""Optimizers as the official TF1 scripts configure them."""

import keras

from rum_tf import compat

# TF1's defaults, which the official scripts relied on (Keras' own are 1e-7).
TF1_RMSPROP_EPSILON = 1e-10
TF1_ADAM_EPSILON = 1e-8


@keras.saving.register_keras_serializable(package="rum_tf")
class TF1RMSprop(keras.optimizers.RMSprop):
    """`keras.optimizers.RMSprop` whose mean square starts at 1, as TF1's RMSPropOptimizer.

    Keras starts it at 0, which makes the first updates about lr / sqrt(1 - rho) in size
    whatever the gradient; TF1 starts it at 1, so early updates are about lr * gradient.
    The update itself (rho, epsilon inside the square root, no momentum) is the same.
    """

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        for velocity in compat.optimizer_velocities(self):
            if velocity is not None:  # None for variables that take no gradient step
                velocity.assign(keras.ops.ones(velocity.shape, dtype=velocity.dtype))


OPTIMIZERS = ("rmsprop", "adam")


def make_optimizer(name, learning_rate, rmsprop_decay=0.9, clip_norm=None):
    """The optimizer `name` ("rmsprop" or "adam").

    Args:
      learning_rate: step size.
      rmsprop_decay: TF1 RMSProp `decay` (Keras `rho`).
      clip_norm: clip the gradients to this global norm; None or 0 turns it off.
    """
    clip = {"global_clipnorm": float(clip_norm)} if clip_norm else {}
    if name == "rmsprop":
        return TF1RMSprop(learning_rate, rho=rmsprop_decay, momentum=0.0, epsilon=TF1_RMSPROP_EPSILON, **clip)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate, epsilon=TF1_ADAM_EPSILON, **clip)
    raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")
