"""python -m rum_tf.benchmark: every row builds and trains, and the table's ratios."""

import keras
import pytest

from rum_tf import benchmark


@pytest.mark.slow
def test_every_row_trains_at_a_tiny_shape(monkeypatch):
    monkeypatch.setitem(benchmark.SHAPES, "tiny", (2, 3, 4, 3, 2, True))
    results = benchmark.time_shape("tiny", False, list(benchmark.ROWS), steps=1, rounds=1, log=lambda *_: None)
    assert list(results) == list(benchmark.ROWS)
    for ms, peak in results.values():
        assert ms > 0
        # MiB where the device counts its peak memory (a GPU), else None: true on any machine.
        assert peak is None or peak > 0


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
