"""python -m rum_tf.benchmark: every row builds and trains, and the table's ratios."""

from rum_tf import benchmark


def test_every_row_trains_at_a_tiny_shape(monkeypatch):
    monkeypatch.setitem(benchmark.SHAPES, "tiny", (2, 3, 4, 3, 2, True))
    results = benchmark.time_shape("tiny", False, list(benchmark.ROWS), steps=1, rounds=1, log=lambda *_: None)
    assert list(results) == list(benchmark.ROWS)
    assert all(ms > 0 and peak is None for ms, peak in results.values())


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
