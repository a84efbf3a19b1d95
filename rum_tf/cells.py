"""Recurrent cells: RUMCell (ARUMCell for λ=1), LayerNormLSTMCell, FastSlowCell.

Each cell is one step of a recurrence written with `keras.ops` only, follows
the Keras cell contract (`state_size`, `output_size`, `build`,
`call(inputs, states, training)`, `get_initial_state`, `get_config`) and is
registered for serialisation.

Randomness (zoneout, dropout) comes in as uniform noise: `call` takes an
optional `noise` tensor [batch, cell.noise_size] and draws it itself when
training without one. The layers of `rum_tf.layers` draw the noise of every
time step before the recurrence and pass it in, because a random draw inside
the loop would repeat the same mask at every step under JAX's `lax.scan`; in a
plain `keras.layers.RNN` the cells key each step's draw on a step counter
carried as an extra state (`NoisyCell`).
"""

import keras
from keras import ops

from rum_tf import rotation
from rum_tf.compat import DropoutRNNCell  # the hook Keras' RNN calls before its loop

_PACKAGE = "rum_tf"
LN_EPSILON = 1e-3


def _float32_if_mixed(dtype):
    """SPEC §6: the normalisations underflow in float16, so a mixed-precision
    policy is replaced by float32 for these cells (inputs are cast on entry)."""
    policy = keras.dtype_policies.get(dtype) if dtype is not None else None
    if policy is None:
        policy = keras.config.dtype_policy()
    if policy.compute_dtype in ("float16", "bfloat16"):
        return "float32"
    return dtype


def _check_keep(name, value):
    if value is not None and not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be None or in (0, 1], got {value!r}.")


def clone_initializer(initializer, k):
    """A fresh copy of `initializer` for the k-th weight (or block) it fills.

    A Keras initializer instance repeats its values, so weights of equal shape
    sharing one would be equal; each gets a copy whose seed is offset by k (or
    a new random seed when none was given).
    """
    config = keras.initializers.serialize(keras.initializers.get(initializer))
    inner = config.get("config", {}) if isinstance(config, dict) else {}
    if inner.get("seed") is not None:
        inner["seed"] = inner["seed"] + k
    return keras.initializers.deserialize(config)


def blockwise_initializer(initializer, sizes, axis):
    """An initializer that fills consecutive blocks of `sizes` along `axis` with separate draws.

    The official code draws separately some weights that rum_tf keeps in one
    variable (the r and u halves of RUM's gate kernel; the input and state rows
    of the LN-LSTM kernel); block k uses `clone_initializer(initializer, k)`.
    """

    def init(shape, dtype=None):
        blocks = []
        for k, size in enumerate(sizes):
            block_shape = list(shape)
            block_shape[axis] = size
            blocks.append(clone_initializer(initializer, k)(tuple(block_shape), dtype))
        return ops.concatenate(blocks, axis=axis)

    return init


def _by_rows(rows, top, bottom, constraint=False):
    """A regularizer (or constraint) applying `top` to a weight's first `rows` rows and `bottom` to the rest.

    RUM's gate kernel holds the input rows and the state rows in one variable.
    """
    if top is None and bottom is None:
        return None
    if constraint:
        keep = lambda c, w: w if c is None else c(w)
        return lambda w: ops.concatenate([keep(top, w[:rows]), keep(bottom, w[rows:])], axis=0)
    return lambda w: sum(r(part) for r, part in ((top, w[:rows]), (bottom, w[rows:])) if r is not None)


def layer_norm(x, gamma, beta, blocks=1, epsilon=LN_EPSILON):
    """Layer norm over each of `blocks` equal slices of the last axis.

    (x - mean) / sqrt(var + epsilon) per block, then one gain and shift per unit.
    """
    shape = ops.shape(x)
    width = x.shape[-1]
    xb = ops.reshape(x, (-1, blocks, width // blocks))
    # Sums, not ops.mean: Keras' JAX mean computes in float32 even for float64.
    scale = 1.0 / (width // blocks)
    mean = ops.sum(xb, axis=-1, keepdims=True) * scale
    var = ops.sum(ops.square(xb - mean), axis=-1, keepdims=True) * scale
    xb = (xb - mean) * ops.rsqrt(var + epsilon)
    return ops.reshape(xb, shape) * gamma + beta


def zoneout(new, old, keep, noise):
    """Keep each unit's new value with probability `keep`.

    Training (noise given, uniform in [0, 1)): a Bernoulli(keep) mask per unit.
    Inference (noise None): the expectation keep * new + (1 - keep) * old.
    """
    if keep is None:
        return new
    if noise is None:
        return keep * new + (1.0 - keep) * old
    mask = ops.cast(noise < keep, new.dtype)
    return mask * new + (1.0 - mask) * old


def dropout(x, keep, noise):
    """Inverted dropout with keep probability `keep`; identity when noise is None."""
    if noise is None or keep is None or keep >= 1.0:
        return x
    return x * ops.cast(noise < keep, x.dtype) / keep


class NoisyCell(keras.layers.Layer, DropoutRNNCell):
    """Base of the cells: training noise (`noise_size`, `draw_noise`) and the float32 policy.

    Noise for a step comes, in order of preference, from the `noise` argument
    (`rum_tf.Recurrent` and `RUM` draw all steps before the loop; a
    `FastSlowCell` hands its sub-cells their slices), from a stateless draw
    keyed on a per-call seed and a step counter (inside a plain
    `keras.layers.RNN`), or from the cell's `SeedGenerator` (a cell called by
    hand). The step counter is why a cell with training noise has one more
    state, of size 1, in a plain Keras RNN: inside JAX's `lax.scan` a loop-carried
    value is the only thing that differs between steps. Keras' RNN asks a
    `DropoutRNNCell` for its masks before the loop (`get_dropout_mask`); that is
    where the per-call seed is drawn, so that every call (batch) gets fresh masks.
    """

    def __init__(self, seed=None, dtype=None, **kwargs):
        super().__init__(dtype=_float32_if_mixed(dtype), **kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.dropout = 0.0  # DropoutRNNCell's variational masks; RUMCell sets them
        self.recurrent_dropout = 0.0
        self._state_size = []
        self._noise_passed_in = False
        self._call_seed = None

    @property
    def noise_size(self):
        """Uniforms per example per step that training needs (0 if none)."""
        return 0

    def _uses_step_noise(self):
        """Whether training draws noise at every step (known before `build`)."""
        return bool(self.noise_size)

    def take_noise_from_caller(self):
        """Called by a layer or cell that passes `noise` to every call: no step counter then."""
        self._noise_passed_in = True

    def _counts_steps(self):
        return self._uses_step_noise() and not self._noise_passed_in

    @property
    def state_size(self):
        return list(self._state_size) + ([1] if self._counts_steps() else [])

    @state_size.setter
    def state_size(self, value):
        self._state_size = list(value)

    def _step_counter_state(self, batch_size):
        """The initial step counter, [] when the cell has none."""
        return [ops.zeros((batch_size, 1), dtype=self.compute_dtype)] if self._counts_steps() else []

    def _take_step_counter(self, states):
        """(states without the step counter, counter or None)."""
        states = list(states)
        if self._counts_steps() and len(states) == len(self.state_size):
            return states[:-1], states[-1]
        return states, None

    @staticmethod
    def _next_step_counter(counter):
        # float32 counts exactly up to 2^24; the per-call seed makes wrapping harmless.
        return [] if counter is None else [ops.mod(counter + 1.0, 2.0**24)]

    def draw_noise(self, shape):
        """Uniform noise of shape `shape + (noise_size,)`, or None if none is needed."""
        if not self.noise_size:
            return None
        return keras.random.uniform(
            tuple(shape) + (self.noise_size,), seed=self.seed_generator, dtype=self.compute_dtype
        )

    def _noise_for_call(self, inputs, training, noise, counter=None):
        if not training:
            return None
        if noise is not None:
            return noise
        if counter is not None and self._call_seed is not None and self.noise_size:
            step = ops.cast(counter[0, 0], "int32")
            seed = self._call_seed + ops.stack([ops.zeros_like(step), step])
            return _stateless_uniform((ops.shape(inputs)[0], self.noise_size), seed, self.compute_dtype)
        return self.draw_noise((ops.shape(inputs)[0],))

    def get_dropout_mask(self, step_input):
        # Keras' RNN calls this before its loop, outside JAX's scan: draw the seed of this call here.
        if self._counts_steps() and self._call_seed is None and _stateless_uniform_available():
            self._call_seed = keras.random.randint((2,), 0, 2**30, seed=self.seed_generator, dtype="int32")
        return super().get_dropout_mask(step_input)

    def reset_dropout_mask(self):
        super().reset_dropout_mask()
        self._call_seed = None

    def get_config(self):
        config = super().get_config()
        config["seed"] = self.seed
        return config


def _stateless_uniform_available():
    # Other backends (torch, numpy) run Keras' RNN as a Python loop, where the
    # seed generator gives fresh noise at every step anyway.
    return keras.backend.backend() in ("tensorflow", "jax")


def _stateless_uniform(shape, seed, dtype):
    """Uniform [0, 1) noise that depends only on `seed` (int32 [2])."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.random.stateless_uniform(shape, seed=seed, dtype=dtype)
    import jax

    return jax.random.uniform(ops.cast(seed, "uint32"), shape, dtype=dtype)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class RUMCell(NoisyCell):
    """Rotational Unit of Memory cell (Dangovski, Jing, Soljačić 2019).

    One step, with x the input (size d) and h the state (size N):

        r, u = split([x; h] W_g + b_g);  u = sigmoid(u);  (LN per block)
        e = x W_e (+ b_e)
        λ=0: h~ = R(e, r) h          λ=1: M_t = M_{t-1} R(e, r),  h~ = M_t h
        c = act((LN) (e + h~));  h' = u h + (1 - u) c;  (η) h' = η h'/|h'|
        zoneout on h' (training: Bernoulli mask; inference: expectation).

    Defaults are those of the official code (SPEC §2).

    Args:
      units: N, the size of the hidden state (positive int).
      lambda_: 0 (rotate the state) or 1 (associative memory M, state (h, M)).
      eta: None or a positive float: the norm the state is scaled to each step.
      activation: activation of the candidate (default "relu").
      use_layer_norm: layer norm on [r; u] (after the sigmoid) and on e + h~.
      zoneout_keep_h: None (off) or the probability of keeping the new h.
      update_gate: if False, h' = c, and the gates are only the r half:
        W_g (d+N, N), b_g (N,) and, with layer norm, one LN block on r (the
        official parameter count).
      trainable_rot: whether the gate kernel W_g and gate bias b_g are trained
        (False freezes both, as the later official code).
      track_angle: if True the output is [cos θ; h] (size N + 1).
      use_embedding_bias: adds b_e (the 2017 code had it; the current one not).
      eps: epsilon of the normalisations (1e-12, as tf.nn.l2_normalize).
      gate_kernel_initializer: initializer of each N-column block of W_g
        (r block, then u block), default orthogonal.
      gate_bias_initializer: default constant 1.0.
      embedding_kernel_initializer: default orthogonal.
      embedding_bias_initializer: default zeros.
      dropout: fraction of the input units dropped (training only), as in
        Keras' GRU: one mask per sequence on x, before both of x's products
        (with W_g's input rows and with W_e).
      recurrent_dropout: fraction of the state units dropped where h meets W_g's
        state rows (the gates), one mask per sequence, as Keras' GRU drops h
        only before its recurrent kernel. The rotation R h, the memory M h and
        the update u h use the whole h: they carry the state without weights,
        and the rotation is norm-preserving only on the state itself.
      kernel_regularizer, kernel_constraint: on the input weights: W_g's input
        rows (its first d rows) and W_e.
      recurrent_regularizer, recurrent_constraint: on W_g's state rows (its
        last N rows).
      bias_regularizer, bias_constraint: on b_g (and b_e when used).
      seed: seed of the zoneout and dropout noise.
      **kwargs: base layer arguments (name, dtype, ...). A mixed-precision
        dtype policy is replaced by float32 (SPEC §6).

    The state is [h] for λ=0 and [h, M - I] for λ=1: the memory M is carried
    as its offset from the identity, flattened to N*N, so that the zero state
    every Keras RNN starts from (and resets to) is M = I.
    """

    def __init__(
        self,
        units,
        lambda_=0,
        eta=None,
        activation="relu",
        use_layer_norm=False,
        zoneout_keep_h=None,
        update_gate=True,
        trainable_rot=True,
        track_angle=False,
        use_embedding_bias=False,
        eps=rotation.EPS,
        gate_kernel_initializer="orthogonal",
        gate_bias_initializer=keras.initializers.Constant(1.0),
        embedding_kernel_initializer="orthogonal",
        embedding_bias_initializer="zeros",
        dropout=0.0,
        recurrent_dropout=0.0,
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(seed=seed, **kwargs)
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise ValueError(f"units must be a positive integer, got {units!r}.")
        for name, rate in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {rate!r}.")
        if isinstance(lambda_, bool) or lambda_ not in (0, 1):
            raise ValueError(f"lambda_ must be 0 or 1, got {lambda_!r}.")
        if eta is not None and not eta > 0:
            raise ValueError(f"eta must be None or > 0, got {eta!r}.")
        _check_keep("zoneout_keep_h", zoneout_keep_h)
        self.units = units
        self.lambda_ = int(lambda_)
        self.eta = None if eta is None else float(eta)
        self.activation = keras.activations.get(activation)
        self.use_layer_norm = bool(use_layer_norm)
        self.zoneout_keep_h = zoneout_keep_h
        self.update_gate = bool(update_gate)
        self.trainable_rot = bool(trainable_rot)
        self.track_angle = bool(track_angle)
        self.use_embedding_bias = bool(use_embedding_bias)
        self.eps = float(eps)
        self.gate_kernel_initializer = keras.initializers.get(gate_kernel_initializer)
        self.gate_bias_initializer = keras.initializers.get(gate_bias_initializer)
        self.embedding_kernel_initializer = keras.initializers.get(embedding_kernel_initializer)
        self.embedding_bias_initializer = keras.initializers.get(embedding_bias_initializer)
        self.dropout = float(dropout)
        self.recurrent_dropout = float(recurrent_dropout)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = keras.regularizers.get(recurrent_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.recurrent_constraint = keras.constraints.get(recurrent_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.state_size = [units] if self.lambda_ == 0 else [units, units * units]
        self.output_size = units + 1 if self.track_angle else units

    @property
    def noise_size(self):
        return self.units if self.zoneout_keep_h is not None else 0

    def build(self, input_shape):
        d = input_shape[-1]
        n = self.units
        self.input_dim = d

        gate_width = 2 * n if self.update_gate else n  # update_gate=False: only the r half, as official
        self.gate_kernel = self.add_weight(
            shape=(d + n, gate_width),
            # Each N-column block (r, then u) is its own draw, as in the official code.
            initializer=blockwise_initializer(self.gate_kernel_initializer, [n] * (gate_width // n), axis=1),
            name="gate_kernel",
            trainable=self.trainable_rot,
            # W_g's input rows are a kernel, its state rows the recurrent kernel (as in Keras' GRU).
            regularizer=_by_rows(d, self.kernel_regularizer, self.recurrent_regularizer),
            constraint=_by_rows(d, self.kernel_constraint, self.recurrent_constraint, constraint=True),
        )
        bias_args = dict(regularizer=self.bias_regularizer, constraint=self.bias_constraint)
        self.gate_bias = self.add_weight(
            shape=(gate_width,),
            initializer=self.gate_bias_initializer,
            name="gate_bias",
            trainable=self.trainable_rot,
            **bias_args,
        )
        self.embedding_kernel = self.add_weight(
            shape=(d, n),
            initializer=self.embedding_kernel_initializer,
            name="embedding_kernel",
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.embedding_bias = None
        if self.use_embedding_bias:
            self.embedding_bias = self.add_weight(
                shape=(n,), initializer=self.embedding_bias_initializer, name="embedding_bias", **bias_args
            )
        if self.use_layer_norm:
            self.gate_ln_gamma = self.add_weight(shape=(gate_width,), initializer="ones", name="gate_ln_gamma")
            self.gate_ln_beta = self.add_weight(shape=(gate_width,), initializer="zeros", name="gate_ln_beta")
            self.candidate_ln_gamma = self.add_weight(shape=(n,), initializer="ones", name="candidate_ln_gamma")
            self.candidate_ln_beta = self.add_weight(shape=(n,), initializer="zeros", name="candidate_ln_beta")

    def input_weights(self):
        """(kernel [d, 3N], bias [3N]): W_g's input rows beside W_e, and b_g beside b_e.

        One matmul with these gives both input projections; callers that run
        many steps build them once and pass them to `project_inputs`.
        """
        kernel = ops.concatenate([self.gate_kernel[: self.input_dim], self.embedding_kernel], axis=-1)
        embedding_bias = self.embedding_bias
        if embedding_bias is None:
            embedding_bias = ops.zeros((self.units,), dtype=self.gate_bias.dtype)
        return kernel, ops.concatenate([self.gate_bias, embedding_bias], axis=-1)

    def project_inputs(self, inputs, weights=None):
        """The input half of a step, [..., d] -> ([..., 2N], [..., N]).

        Returns (x W_gx + b_g, x W_e (+ b_e)). It does not depend on the state,
        so `rum_tf.layers.RUM` may compute it for all time steps at once.

        Args:
          inputs: [..., d].
          weights: `input_weights()`, built once by a caller that runs many
            steps: then the two projections are one matmul. Without them, two
            matmuls on the weights as they are (concatenating per call would
            cost more than it saves).
        """
        if weights is not None:
            kernel, bias = weights
            return ops.split(ops.matmul(inputs, kernel) + bias, [kernel.shape[-1] - self.units], axis=-1)
        gates = ops.matmul(inputs, self.gate_kernel[: self.input_dim]) + self.gate_bias
        embedded = ops.matmul(inputs, self.embedding_kernel)
        if self.embedding_bias is not None:
            embedded = embedded + self.embedding_bias
        return gates, embedded

    def recurrent_step(
        self, projected, states, noise=None, recurrent_kernel=None, recurrent_mask=None, return_memory_factors=False
    ):
        """The state half of a step, given `project_inputs` of this step's input.

        Args:
          projected: ([B, 2N], [B, N]) from `project_inputs`.
          states: [h] or [h, (M - I) flattened].
          noise: None (inference) or uniforms [B, N] for zoneout.
          recurrent_kernel: W_g's state rows, if already sliced by the caller.
          recurrent_mask: None, or the recurrent dropout mask [B, N] (scaled by
            1 / (1 - rate)) applied to h where it meets W_g's state rows.
          return_memory_factors: (λ=1) also return the factors of the memory's
            rank-2 update (`rotation.memory_step`), which undo the step.

        Returns:
          (output, new_states), or (output, new_states, factors).
        """
        n = self.units
        h = states[0]
        if recurrent_kernel is None:
            recurrent_kernel = self.gate_kernel[self.input_dim :]
        input_gates, embedded = projected
        gates = input_gates + ops.matmul(h if recurrent_mask is None else h * recurrent_mask, recurrent_kernel)
        if self.update_gate:
            target, update = ops.split(gates, 2, axis=-1)
            update = ops.sigmoid(update)
            if self.use_layer_norm:
                # LN acts on [r; sigmoid(u)], per N-block.
                gates = layer_norm(ops.concatenate([target, update], axis=-1), self.gate_ln_gamma, self.gate_ln_beta, 2)
                target, update = ops.split(gates, 2, axis=-1)
        else:
            target = gates
            if self.use_layer_norm:
                target = layer_norm(target, self.gate_ln_gamma, self.gate_ln_beta)

        factors = None
        if self.lambda_ == 0:
            rotated, cos = rotation.rotate_with_cos(embedded, target, h, self.eps)
            new_states = []
        else:
            offset = ops.reshape(states[1], (-1, n, n))  # M - I
            offset, rotated, cos, factors = rotation.memory_step(offset, embedded, target, h, self.eps)
            new_states = [ops.reshape(offset, (-1, n * n))]

        candidate = embedded + rotated
        if self.use_layer_norm:
            candidate = layer_norm(candidate, self.candidate_ln_gamma, self.candidate_ln_beta)
        candidate = self.activation(candidate)
        # u h + (1 - u) c, written with one product fewer.
        new_h = candidate + update * (h - candidate) if self.update_gate else candidate
        if self.eta is not None:
            new_h = self.eta * rotation.l2_normalize(new_h, self.eps)
        new_h = zoneout(new_h, h, self.zoneout_keep_h, noise)
        output = ops.concatenate([cos, new_h], axis=-1) if self.track_angle else new_h
        if return_memory_factors:
            return output, [new_h] + new_states, factors
        return output, [new_h] + new_states

    def call(self, inputs, states, training=False, noise=None):
        if not isinstance(states, (list, tuple)):
            states = [states]
        states, counter = self._take_step_counter(states)
        noise = self._noise_for_call(inputs, training, noise, counter)
        input_mask, recurrent_mask = self.dropout_masks(inputs, states[0], training)
        if input_mask is not None:
            inputs = inputs * input_mask
        output, new_states = self.recurrent_step(self.project_inputs(inputs), states, noise, None, recurrent_mask)
        return output, new_states + self._next_step_counter(counter)

    def dropout_masks(self, inputs, h, training):
        """(input mask or None, recurrent mask or None) of `dropout`/`recurrent_dropout`.

        As in Keras' GRU, one mask per sequence (Keras' RNN draws them before the
        loop; they are cached until it resets them), scaled by 1 / (1 - rate).
        """
        if not training:
            return None, None
        return (
            self.get_dropout_mask(inputs) if self.dropout else None,
            self.get_recurrent_dropout_mask(h) if self.recurrent_dropout else None,
        )

    def get_initial_state(self, batch_size=None):
        # All zeros, also for λ=1: the memory is carried as M - I, and M_0 = I.
        sizes = [self.units] if self.lambda_ == 0 else [self.units, self.units * self.units]
        zeros = [ops.zeros((batch_size, size), dtype=self.compute_dtype) for size in sizes]
        return zeros + self._step_counter_state(batch_size)

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units,
            lambda_=self.lambda_,
            eta=self.eta,
            activation=keras.activations.serialize(self.activation),
            use_layer_norm=self.use_layer_norm,
            zoneout_keep_h=self.zoneout_keep_h,
            update_gate=self.update_gate,
            trainable_rot=self.trainable_rot,
            track_angle=self.track_angle,
            use_embedding_bias=self.use_embedding_bias,
            eps=self.eps,
            gate_kernel_initializer=keras.initializers.serialize(self.gate_kernel_initializer),
            gate_bias_initializer=keras.initializers.serialize(self.gate_bias_initializer),
            embedding_kernel_initializer=keras.initializers.serialize(self.embedding_kernel_initializer),
            embedding_bias_initializer=keras.initializers.serialize(self.embedding_bias_initializer),
            dropout=self.dropout,
            recurrent_dropout=self.recurrent_dropout,
            kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer),
            recurrent_regularizer=keras.regularizers.serialize(self.recurrent_regularizer),
            bias_regularizer=keras.regularizers.serialize(self.bias_regularizer),
            kernel_constraint=keras.constraints.serialize(self.kernel_constraint),
            recurrent_constraint=keras.constraints.serialize(self.recurrent_constraint),
            bias_constraint=keras.constraints.serialize(self.bias_constraint),
        )
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ARUMCell(RUMCell):
    """The λ=1 (associative memory) RUM cell, as named in the first official repo.

    Same arguments as `RUMCell` except `lambda_`, which is fixed to 1.
    """

    def __init__(self, units, **kwargs):
        lambda_ = kwargs.pop("lambda_", 1)
        if lambda_ != 1:
            raise ValueError(f"ARUMCell is the λ=1 cell; got lambda_={lambda_!r}. Use RUMCell.")
        super().__init__(units, lambda_=1, **kwargs)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LayerNormLSTMCell(NoisyCell):
    """LSTM with layer norm and zoneout: the fast cell of the FS-RNN (SPEC §3).

        i, j, f, o = LN per block([x; h] W + b)
        c' = c σ(f + forget_bias) + σ(i) tanh(j);   h' = tanh(LN(c')) σ(o)
        zoneout on h (keep `zoneout_keep_h`) and on c (keep `zoneout_keep_c`).

    Args:
      units: size of h and c.
      zoneout_keep_h: None (off) or probability of keeping the new h (0.9).
      zoneout_keep_c: None (off) or probability of keeping the new c (0.5).
      forget_bias: added to f before the sigmoid (1.0).
      kernel_initializer: for W, shape (d + units, 4 units), rows [x; h]; the
        x rows and the h rows are separate draws (W_xh and W_hh of the
        official code); orthogonal.
      bias_initializer: zeros.
      seed: seed of the zoneout noise.
      **kwargs: base layer arguments.

    The state is [h, c].
    """

    def __init__(
        self,
        units,
        zoneout_keep_h=0.9,
        zoneout_keep_c=0.5,
        forget_bias=1.0,
        kernel_initializer="orthogonal",
        bias_initializer="zeros",
        seed=None,
        **kwargs,
    ):
        super().__init__(seed=seed, **kwargs)
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise ValueError(f"units must be a positive integer, got {units!r}.")
        _check_keep("zoneout_keep_h", zoneout_keep_h)
        _check_keep("zoneout_keep_c", zoneout_keep_c)
        self.units = units
        self.zoneout_keep_h = zoneout_keep_h
        self.zoneout_keep_c = zoneout_keep_c
        self.forget_bias = float(forget_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.state_size = [units, units]
        self.output_size = units

    @property
    def noise_size(self):
        return self.units * ((self.zoneout_keep_h is not None) + (self.zoneout_keep_c is not None))

    def build(self, input_shape):
        d = input_shape[-1]
        n = self.units
        # W_xh and W_hh are separate draws in the official code; one variable here, rows [x; h].
        self.kernel = self.add_weight(
            shape=(d + n, 4 * n),
            initializer=blockwise_initializer(self.kernel_initializer, [d, n], axis=0),
            name="kernel",
        )
        self.bias = self.add_weight(shape=(4 * n,), initializer=self.bias_initializer, name="bias")
        self.gate_ln_gamma = self.add_weight(shape=(4 * n,), initializer="ones", name="gate_ln_gamma")
        self.gate_ln_beta = self.add_weight(shape=(4 * n,), initializer="zeros", name="gate_ln_beta")
        self.cell_ln_gamma = self.add_weight(shape=(n,), initializer="ones", name="cell_ln_gamma")
        self.cell_ln_beta = self.add_weight(shape=(n,), initializer="zeros", name="cell_ln_beta")

    def call(self, inputs, states, training=False, noise=None):
        n = self.units
        (h, c), counter = self._take_step_counter(states)
        noise = self._noise_for_call(inputs, training, noise, counter)
        z = ops.matmul(ops.concatenate([inputs, h], axis=-1), self.kernel) + self.bias
        z = layer_norm(z, self.gate_ln_gamma, self.gate_ln_beta, blocks=4)
        i, j, f, o = z[:, :n], z[:, n : 2 * n], z[:, 2 * n : 3 * n], z[:, 3 * n :]
        new_c = c * ops.sigmoid(f + self.forget_bias) + ops.sigmoid(i) * ops.tanh(j)
        new_h = ops.tanh(layer_norm(new_c, self.cell_ln_gamma, self.cell_ln_beta)) * ops.sigmoid(o)
        noise_h = noise_c = None
        if noise is not None:
            offset = n if self.zoneout_keep_h is not None else 0
            noise_h, noise_c = noise[:, :offset], noise[:, offset:]
        new_h = zoneout(new_h, h, self.zoneout_keep_h, noise_h)
        new_c = zoneout(new_c, c, self.zoneout_keep_c, noise_c)
        return new_h, [new_h, new_c] + self._next_step_counter(counter)

    def get_initial_state(self, batch_size=None):
        zeros = [ops.zeros((batch_size, self.units), dtype=self.compute_dtype) for _ in range(2)]
        return zeros + self._step_counter_state(batch_size)

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units,
            zoneout_keep_h=self.zoneout_keep_h,
            zoneout_keep_c=self.zoneout_keep_c,
            forget_bias=self.forget_bias,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
        )
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FastSlowCell(NoisyCell):
    """Fast-Slow RNN step (Mujika et al. 2017), SPEC §3.

        x -> dropout -> Fast_0 -> dropout -> Slow -> dropout -> Fast_1 -> Fast_2 ...
          -> dropout -> output

    Fast_1, Fast_2, ... continue Fast_0's state; Fast_2 onwards get a zero input
    of width 1, as in the FS-RNN code. Dropout acts only in training.

    Args:
      fast_cells: list of at least two cells with the same state sizes
        (LayerNormLSTMCell in the paper).
      slow_cell: any cell (a RUMCell in FS-RUM-2, a LayerNormLSTMCell in FS-LSTM-2).
      keep_prob: dropout keep probability (0.65).
      seed: seed of the noise.
      **kwargs: base layer arguments.

    The state is the fast cells' state followed by the slow cell's state.
    """

    def __init__(self, fast_cells, slow_cell, keep_prob=0.65, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        fast_cells = [keras.layers.deserialize(c) if isinstance(c, dict) else c for c in fast_cells]
        if isinstance(slow_cell, dict):
            slow_cell = keras.layers.deserialize(slow_cell)
        if len(fast_cells) < 2:
            raise ValueError(f"FastSlowCell needs at least two fast cells, got {len(fast_cells)}.")
        _check_keep("keep_prob", keep_prob)
        for cell in fast_cells + [slow_cell]:
            if isinstance(cell, NoisyCell):
                cell.take_noise_from_caller()  # their noise is a slice of this cell's
        sizes = {tuple(_as_list(c.state_size)) for c in fast_cells}
        if len(sizes) != 1:
            raise ValueError(f"The fast cells must share their state sizes, got {sorted(sizes)}.")
        self.fast_cells = fast_cells
        self.slow_cell = slow_cell
        self.keep_prob = keep_prob
        self._fast_state_size = _as_list(fast_cells[0].state_size)
        self._slow_state_size = _as_list(slow_cell.state_size)
        self.state_size = self._fast_state_size + self._slow_state_size
        self.output_size = fast_cells[-1].output_size
        self.input_dim = None

    def _noise_layout(self):
        """Widths of the noise slices, in the order they are used."""
        dropouts = [self.input_dim, self.fast_cells[0].output_size, self.slow_cell.output_size, self.output_size]
        keep = self.keep_prob is not None and self.keep_prob < 1.0
        return [w if keep else 0 for w in dropouts] + [
            getattr(c, "noise_size", 0) for c in self.fast_cells + [self.slow_cell]
        ]

    @property
    def noise_size(self):
        return sum(self._noise_layout()) if self.input_dim is not None else 0

    def _uses_step_noise(self):
        cells = self.fast_cells + [self.slow_cell]
        return (self.keep_prob is not None and self.keep_prob < 1.0) or any(
            isinstance(c, NoisyCell) and c._uses_step_noise() for c in cells
        )

    def build(self, input_shape):
        self.input_dim = input_shape[-1]
        widths = [self.input_dim, self.slow_cell.output_size] + [1] * (len(self.fast_cells) - 2)
        shapes = [(self.fast_cells[0], self.input_dim), (self.slow_cell, self.fast_cells[0].output_size)]
        shapes += list(zip(self.fast_cells[1:], widths[1:]))
        for cell, width in shapes:
            if not cell.built:  # cells restored from a saved config arrive built
                cell.build((None, width))

    def call(self, inputs, states, training=False, noise=None):
        states, counter = self._take_step_counter(states)
        noise = self._noise_for_call(inputs, training, noise, counter)
        slices = iter(_split(noise, self._noise_layout()))
        drop_in, drop_fast, drop_slow, drop_out = (next(slices) for _ in range(4))
        cell_noise = list(slices)
        k = len(self._fast_state_size)
        fast_state, slow_state = list(states[:k]), list(states[k:])

        x = dropout(inputs, self.keep_prob, drop_in)
        fast_out, fast_state = self._step(self.fast_cells[0], x, fast_state, training, cell_noise[0])
        x = dropout(fast_out, self.keep_prob, drop_fast)
        slow_out, slow_state = self._step(self.slow_cell, x, slow_state, training, cell_noise[-1])
        x = dropout(slow_out, self.keep_prob, drop_slow)
        fast_out, fast_state = self._step(self.fast_cells[1], x, fast_state, training, cell_noise[1])
        for i, cell in enumerate(self.fast_cells[2:], start=2):
            fast_out, fast_state = self._step(cell, fast_out[:, :1] * 0.0, fast_state, training, cell_noise[i])
        output = dropout(fast_out, self.keep_prob, drop_out)
        return output, fast_state + slow_state + self._next_step_counter(counter)

    @staticmethod
    def _step(cell, x, states, training, noise):
        if isinstance(cell, NoisyCell):
            out, new = cell(x, states, training=training, noise=noise)
        else:
            out, new = cell(x, states, training=training)
        return out, _as_list(new)

    def get_initial_state(self, batch_size=None):
        states = _initial_state(self.fast_cells[0], batch_size) + _initial_state(self.slow_cell, batch_size)
        return states + self._step_counter_state(batch_size)

    def get_config(self):
        config = super().get_config()
        config.update(
            fast_cells=[keras.layers.serialize(c) for c in self.fast_cells],
            slow_cell=keras.layers.serialize(self.slow_cell),
            keep_prob=self.keep_prob,
        )
        return config


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _split(noise, widths):
    """Consecutive slices of `noise` of the given widths (None when noise is None or width 0)."""
    out, start = [], 0
    for w in widths:
        out.append(None if noise is None or not w else noise[:, start : start + w])
        start += w
    return out


def _initial_state(cell, batch_size):
    fn = getattr(cell, "get_initial_state", None)
    if fn is not None:
        return _as_list(fn(batch_size=batch_size))
    return [ops.zeros((batch_size, s), dtype=cell.compute_dtype) for s in _as_list(cell.state_size)]
