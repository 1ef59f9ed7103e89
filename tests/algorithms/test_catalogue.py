from pathlib import Path

from grpolab.algorithms import PRESETS
from grpolab.algorithms.catalogue import SLOT_REGISTRIES, methods_markdown, parts_table, presets_table, public
from grpolab.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_docs_methods_md_is_generated_from_the_registries():
    on_disk = (ROOT / "docs" / "methods.md").read_text()
    assert on_disk == methods_markdown(), (
        "docs/methods.md is stale: run `grpolab algorithms --markdown > docs/methods.md`"
    )


def test_every_preset_and_part_is_documented():
    text = methods_markdown()
    for name in PRESETS:
        assert f"`{name}`" in text and PRESETS[name].arxiv in text
    for registry in SLOT_REGISTRIES.values():
        for name in public(registry):
            assert f"| `{name}` |" in text


def test_every_part_has_a_docstring_summary():
    for slot, registry in SLOT_REGISTRIES.items():
        for name in public(registry):
            assert registry[name].__doc__, f"{slot} {name!r} has no docstring"


def test_cli_algorithms_lists_presets_with_parts_and_papers(capsys):
    assert main(["algorithms"]) == 0
    out = capsys.readouterr().out
    assert out == presets_table()
    assert "grpo  —  DeepSeekMath" in out and "advantage    grpo(scale=group)" in out
    assert "loss         clip_higher(epsilon_low=0.2, epsilon_high=0.28)" in out


def test_cli_parts_and_markdown_views(capsys):
    assert main(["algorithms", "--parts"]) == 0
    assert capsys.readouterr().out == parts_table()
    assert main(["algorithms", "--markdown"]) == 0
    assert capsys.readouterr().out == methods_markdown()
