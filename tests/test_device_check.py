"""python -m tasks.device_check: parts in their own processes and time limits, reports, --smoke."""

import importlib.util
import json
import subprocess
import sys
import time

import pytest

from tasks import device_check
from training_helpers import REPO


def _fake_parts(monkeypatch, behaviour, installed=("jax",)):
    """Each part kind runs `behaviour[kind]` (Python code; RESULT is its result file) instead of its check."""

    def command(kind, out, result_file, limit, smoke):
        code = f"RESULT = {str(result_file)!r}\n" + behaviour[kind]
        return [sys.executable, "-c", code]

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(device_check, "_part_command", command)
    monkeypatch.setattr(
        device_check.importlib.util,
        "find_spec",
        lambda name, *a: (
            (real_find_spec("json") if name in installed else None)
            if name in device_check.BACKENDS
            else real_find_spec(name, *a)
        ),
    )


WRITE_OK = "import json; json.dump({'device': 'cpu', 'note': 'fine'}, open(RESULT, 'w'))"


def test_a_hung_or_failing_part_is_reported_and_the_others_still_run(monkeypatch, tmp_path):
    _fake_parts(
        monkeypatch,
        {
            "environment": WRITE_OK,
            "xla": "import time; time.sleep(60)",
            "speed": "import sys; print('the speed part broke'); sys.exit(3)",
            "run": WRITE_OK,
        },
    )
    start = time.monotonic()
    report = device_check.run_parts(tmp_path, smoke=True, budget_s=8)
    assert time.monotonic() - start < 20  # the hung part was ended at its limit
    parts = report["parts"]
    assert parts["environment"]["status"] == "ok" and parts["jax_run"]["status"] == "ok"
    assert parts["jax_xla"]["status"] == "timeout"
    assert parts["jax_speed"]["status"] == "failed" and "the speed part broke" in parts["jax_speed"]["error"]
    assert all(parts[f"tensorflow_{k}"]["status"] == "skipped: no tensorflow" for k in ("xla", "speed", "run"))
    assert not device_check.ran(report)
    assert json.loads((tmp_path / "device.json").read_text()) == report
    text = (tmp_path / "DEVICE.md").read_text()
    assert "Path that ran: JAX (TF-free)." in text
    assert "| jax_xla | timeout |" in text and "| tensorflow_run | skipped: no tensorflow |" in text
    assert "## jax_speed: last lines of its log" in text and "the speed part broke" in text


def test_every_part_ran_when_each_is_ok_or_skipped(monkeypatch, tmp_path):
    _fake_parts(monkeypatch, dict.fromkeys(("environment", "xla", "speed", "run"), WRITE_OK), installed=())
    report = device_check.run_parts(tmp_path, smoke=True, budget_s=60)
    assert device_check.ran(report)
    assert "Path that ran: none." in (tmp_path / "DEVICE.md").read_text()


def test_the_parts_share_the_budget_so_all_of_them_end_within_it(monkeypatch, tmp_path):
    _fake_parts(monkeypatch, dict.fromkeys(("environment", "xla", "speed", "run"), "import time; time.sleep(60)"))
    report = device_check.run_parts(tmp_path, smoke=False, only=["environment", "jax_xla", "jax_speed"], budget_s=6)
    limits = [p["limit_s"] for p in report["parts"].values()]
    assert all(p["status"] == "timeout" for p in report["parts"].values())
    # Shares in proportion to the nominal limits (60, 120, 150 s): about 1.1, 2.2 and what is left.
    assert limits[0] == 1 and limits[1] == 2
    assert sum(p["seconds"] for p in report["parts"].values()) < 6 + 3


@pytest.mark.parametrize(
    "args, message",
    [
        (["--parts=environment,gpu"], "device_check: unknown part(s) ['gpu']; choose from"),
        (["--budget_s=0"], "device_check: --budget_s must be > 0"),
        ([], "device_check: the following arguments are required: --out"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    out = [f"--out={tmp_path}"] if args else []
    done = subprocess.run(
        [sys.executable, "-m", "tasks.device_check"] + args + out, cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 2 and done.stderr.startswith(message) and done.stderr.count("\n") == 1, done.stderr


def test_an_out_path_that_is_a_file_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "file").write_text("")
    done = subprocess.run(
        [sys.executable, "-m", "tasks.device_check", f"--out={tmp_path / 'file'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and done.stderr.startswith("device_check: --out=") and done.stderr.count("\n") == 1


@pytest.mark.slow
def test_smoke_runs_every_part_and_writes_both_files(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "tasks.device_check", "--smoke", f"--out={tmp_path}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=700,
    )
    report = json.loads((tmp_path / "device.json").read_text())
    assert done.returncode == 0, (done.stdout, (tmp_path / "DEVICE.md").read_text())
    parts = report["parts"]
    assert list(parts) == [name for name, _, _ in device_check.parts()]
    for backend in device_check.BACKENDS:
        if importlib.util.find_spec(backend) is None:
            continue
        xla = parts[f"{backend}_xla"]["result"]["rows"]
        assert all(r["gradient_error"] < device_check.GRADIENT_TOLERANCE for r in xla.values())
        assert "| copying | RUM λ=1 |" in parts[f"{backend}_speed"]["result"]["best"]
        assert parts[f"{backend}_run"]["result"]["steps"] == 4
    text = (tmp_path / "DEVICE.md").read_text()
    assert text.startswith("# Device check") and "## Short run" in text
