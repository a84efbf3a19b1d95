"""python -m rum_tf.benchmark: every row builds and trains, and the table's ratios."""

from rum_tf import benchmark


def test_every_row_trains_at_a_tiny_shape(monkeypatch):
    monkeypatch.setitem(benchmark.SHAPES, "tiny", (2, 3, 4, 3, 2, True))
    results = benchmark.time_shape("tiny", False, list(benchmark.ROWS), steps=1, rounds=1, log=lambda *_: None)
    assert list(results) == list(benchmark.ROWS)
    assert all(ms > 0 and peak is None for ms, peak in results.values())


def test_table_gives_ratios_against_the_gru_of_the_same_group():
    table = benchmark.format_table(
        {
            ("copying", False): {"Keras GRU": (100.0, None), "RUM λ=0": (80.0, None)},
            ("copying", True): {"Keras GRU": (50.0, None), "RUM λ=0": (75.0, 12.0)},
        }
    )
    assert "| copying | off | RUM λ=0 | 80.0 | 0.80 | n/a |" in table
    assert "| copying | on | RUM λ=0 | 75.0 | 1.50 | 12 |" in table
