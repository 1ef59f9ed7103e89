"""A run killed with SIGKILL mid-way and resumed with --resume reaches the same metrics as an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

ARGS = [
    "--model",
    "random-tiny",
    "--steps",
    "40",
    "--save-every",
    "10",
    "--eval-every",
    "20",
    "--num-prompts",
    "2",
    "--num-generations",
    "4",
    "--max-new-tokens",
    "4",
    "--eval-prompts",
    "8",
    "--progress",
    "false",
    "--learning-rate",
    "0.001",
    "--seed",
    "3",
]


def cli(*args):
    return [sys.executable, "-m", "grpolab.cli", "train", *ARGS, *args]


def records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_resume_after_sigkill_reaches_the_same_metrics(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = str(tmp_path)
    subprocess.run(cli("--output-dir", out, "--name", "full"), env=env, check=True, capture_output=True)

    proc = subprocess.Popen(
        cli("--output-dir", out, "--name", "killed"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    first = tmp_path / "killed" / "checkpoints" / "step-0000010.pt"
    deadline = time.monotonic() + 120
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed mid-way"
    killed = records(tmp_path / "killed")
    assert killed[-1]["step"] < 40 and not (tmp_path / "killed" / "final").exists()

    subprocess.run(cli("--resume", str(tmp_path / "killed")), env=env, check=True, capture_output=True)
    full, resumed = records(tmp_path / "full"), records(tmp_path / "killed")
    assert [r["step"] for r in resumed] == [r["step"] for r in full] == list(range(41))
    for a, b in zip(full, resumed, strict=True):
        for key in ("reward", "accuracy", "loss", "entropy", "eval/pass@1", "response_length"):
            assert a.get(key) == b.get(key), (a["step"], key, a.get(key), b.get(key))
