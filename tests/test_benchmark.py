"""python -m tasks.benchmark: every row builds and trains, the variants swap what they say, the tables."""

import inspect

import keras
import numpy as np
import pytest
from keras import ops

from rum_tf import reversible, rotation
from tasks import benchmark


@pytest.mark.slow
def test_every_row_trains_at_a_tiny_shape(monkeypatch):
    monkeypatch.setitem(benchmark.SHAPES, "tiny", (2, 3, 4, 3, 2, True))
    results = benchmark.time_shape("tiny", False, list(benchmark.ROWS), steps=1, rounds=1, log=lambda *_: None)
    assert list(results) == list(benchmark.ROWS)
    for ms, peak in results.values():
        assert ms > 0
        # MiB where the device counts its peak memory (a GPU), else None: true on any machine.
        assert peak is None or peak > 0


VARIANTS = {  # row: (the rotation function it swaps, the function swapped in)
    "RUM λ=0 (autodiff rotation)": ("rotate_with_cos", benchmark._autodiff_rotate_with_cos),
    "RUM λ=1 (autodiff memory step)": ("memory_step", rotation.memory_step_autodiff),
    "RUM λ=1 (full product)": ("memory_step", benchmark._full_product_memory_step),
}


@pytest.mark.parametrize("row", sorted(VARIANTS))
def test_a_variant_row_computes_the_layer_with_its_function_swapped_in(monkeypatch, row):
    name, function = VARIANTS[row]
    original = getattr(rotation, name)
    calls = []

    def spy(*args, **kwargs):
        # Whether the reversible backward pass (reversible.run's `backward`) is recomputing a step.
        calls.append(any(f.function == "backward" and f.filename == reversible.__file__ for f in inspect.stack()))
        return function(*args, **kwargs)

    monkeypatch.setattr(benchmark, "_autodiff_rotate_with_cos", spy)
    monkeypatch.setattr(benchmark, "_full_product_memory_step", spy)
    monkeypatch.setattr(rotation, "memory_step_autodiff", spy)
    variant = benchmark.ROWS[row](5, True)
    plain = benchmark.ROWS["RUM λ=1" if "λ=1" in row else "RUM λ=0"](5, True)
    x = np.random.default_rng(0).normal(size=(2, 4, 3)).astype(np.float32)
    weigh = np.random.default_rng(1).normal(size=(2, 4, 5))
    for layer in (variant, plain):
        layer.build((None, None, 3))
    variant.set_weights(plain.get_weights())
    np.testing.assert_allclose(ops.convert_to_numpy(variant(x)), ops.convert_to_numpy(plain(x)), atol=1e-5)
    assert calls and getattr(rotation, name) is original  # swapped in for the call only
    grads = benchmark._weight_gradients(variant, x, weigh)
    want = benchmark._weight_gradients(plain, x, weigh)
    for key in want:
        np.testing.assert_allclose(grads[key], want[key], atol=1e-4)
    # The reversible row recomputes steps backwards: swapped in there too.
    assert any(calls) == (row == "RUM λ=1 (autodiff memory step)")


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the TensorFlow device query")
def test_peak_memory_reads_the_gpu_counter_where_there_is_a_gpu(monkeypatch):
    import tensorflow as tf

    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["GPU:0"])
    monkeypatch.setattr(tf.config.experimental, "get_memory_info", lambda device: {"current": 0, "peak": 3 * 2**20})
    assert benchmark._peak_memory() == 3.0
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    assert benchmark._peak_memory() is None


def test_table_gives_ratios_against_the_gru_and_rum_of_the_same_group():
    table = benchmark.format_table(
        {
            ("copying", False): {"Keras GRU": (100.0, None), "RUM λ=0": (80.0, None), "RUM λ=1": (160.0, None)},
            ("copying", True): {"Keras GRU": (50.0, None), "RUM λ=0": (75.0, 12.0)},
        }
    )
    assert "| copying | off | RUM λ=0 | 80.0 | 0.80 | 1.00 | n/a |" in table
    assert "| copying | off | RUM λ=1 | 160.0 | 1.60 | 2.00 | n/a |" in table
    assert "| copying | on | RUM λ=0 | 75.0 | 1.50 | 1.00 | 12 |" in table


def test_memory_table_reports_the_growth_between_the_first_two_lengths():
    table = benchmark.format_memory_table({"RUM λ=1": {100: 900.0, 400: 950.0, 1600: None}}, [100, 400, 1600])
    assert "| RUM λ=1 | 900 | 950 | – | +50 |" in table


def test_memory_child_prints_its_peak_rss(capsys):
    benchmark._rss_child("RUM λ=1|3|off")
    assert '"rss_mib"' in capsys.readouterr().out


def test_profile_sums_op_time_by_type(monkeypatch):
    import pytest

    if benchmark.keras.backend.backend() != "tensorflow":
        pytest.skip("--profile reads TensorFlow's profiler")
    monkeypatch.setitem(benchmark.SHAPES, "tiny", (2, 3, 4, 3, 2, True))
    results = benchmark.profile_ops("tiny", False, ["RUM λ=1"], steps=1)
    wall, by_type = results["RUM λ=1"]
    assert wall > 0 and by_type and all(ms >= 0 and count > 0 for ms, count in by_type.values())
    table = benchmark.format_profile(results, top=3)
    assert table.startswith("RUM λ=1: ") and table.count("\n| ") <= 5


def test_best_table_compares_each_row_at_its_fastest_setting_with_the_fastest_references():
    # The issue-22 case: XLA slows every model down, the ratio of the per-setting rows misleads.
    table = benchmark.format_best(
        {
            ("copying", False): {"Keras GRU": (142.0, None), "RUM λ=0": (136.0, None), "RUM λ=1": (1190.0, None)},
            ("copying", True): {"Keras GRU": (453.0, None), "RUM λ=0": (400.0, None), "RUM λ=1": (1000.0, None)},
        }
    )
    assert "| copying | Keras GRU | 142.0 | off | 1.00 | 1.04 |" in table
    assert "| copying | RUM λ=1 | 1000.0 | on | 7.04 | 7.35 |" in table


def test_fused_floor_is_six_passes_over_the_memory_per_time_step():
    # copying: B=128, T=220, N=100: 6 x 5.12 MB x 220 = 6.76 GB; at 100 GB/s, 67.6 ms.
    assert benchmark.fused_floor_ms("copying", 100.0) == pytest.approx(67.584)


def test_bandwidth_is_measured_on_the_backend():
    assert benchmark.measure_bandwidth(2, 8, repeats=3) > 0
