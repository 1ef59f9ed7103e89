"""The repository's promises: the README's two set-up commands, CI reading the README's test command."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands():
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())


def test_readme_starts_with_exactly_two_setup_commands():
    commands = readme_commands()
    assert commands[:2] == [
        "bash scripts/install.sh && .venv/bin/grpolab train",
        "bash scripts/install.sh dev && .venv/bin/python -m pytest -q",
    ]


def test_ci_runs_the_readme_test_command():
    script = (ROOT / ".ci" / "run").read_text()
    found = subprocess.run(
        ["awk", "/<!-- test-command -->/{found=1; next} found && /^[^`]/{print; exit}", "README.md"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert found == readme_commands()[1]
    assert "<!-- test-command -->" in script


def test_console_script_runs():
    out = subprocess.run(
        [sys.executable, "-m", "grpolab.cli", "algorithms"], capture_output=True, text=True, check=True
    )
    assert "dr_grpo" in out.stdout


def test_readme_python_example_runs_and_says_the_truth():
    blocks = re.findall(r"```python\n(.+?)\n```", (ROOT / "README.md").read_text(), flags=re.S)
    (code,) = [b for b in blocks if "ADVANTAGES" in b]
    namespace: dict = {}
    exec(code, namespace)
    adv = namespace["adv"]
    assert [round(a, 4) for a in adv[:, 0].tolist()] == [1.5, -0.5, -0.5, -0.5]
    assert namespace["logp"].grad is not None and namespace["metrics"]["clip_frac"] == 0.0


def test_readme_custom_task_example_trains(tmp_path, monkeypatch):
    import json

    from grpolab.data import TASKS

    blocks = re.findall(r"```python\n(.+?)\n```", (ROOT / "README.md").read_text(), flags=re.S)
    (code,) = [b for b in blocks if "TASKS.register" in b]
    rows = [{"prompt": f"{a}+1=", "answer": str(a + 1)} for a in range(60)]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.chdir(tmp_path)
    code = code.replace('"./my-hf-model"', '"random-tiny"').replace(
        '"algo": "dr_grpo"}',
        '"algo": "dr_grpo", "steps": 1, "num_prompts": 2, "num_generations": 2, "eval_prompts": 2, "progress": False}',
    )
    try:
        exec(code, {})
    finally:
        TASKS._entries.pop("mine", None)
        TASKS._requires.pop("mine", None)
    assert list((tmp_path / "runs").glob("dr_grpo-mine-*/final/config.json"))
