import pytest

from grpolab.core.registry import Registry, UnknownNameError


def test_register_lookup_and_sorted_names():
    reg = Registry("thing")

    @reg.register("b")
    def b():
        return "b"

    reg.add("a", 42)
    assert reg["b"]() == "b" and reg["a"] == 42
    assert sorted(reg) == ["a", "b"] and len(reg) == 2 and "a" in reg and "c" not in reg


def test_duplicate_names_raise():
    reg = Registry("thing")
    reg.add("x", 1)
    with pytest.raises(ValueError, match="'x' is already registered"):
        reg.add("x", 2)
    with pytest.raises(ValueError, match="already registered"):

        @reg.register("x")
        def other():
            pass

    assert reg["x"] == 1


def test_unknown_name_lists_known_names():
    reg = Registry("advantage")
    reg.add("grpo", 1)
    reg.add("rloo", 2)
    with pytest.raises(UnknownNameError) as info:
        reg["gpro"]
    assert str(info.value) == "unknown advantage 'gpro'; known: grpo, rloo"
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)


def test_bad_names_raise():
    reg = Registry("thing")
    with pytest.raises(ValueError, match="non-empty string"):
        reg.add("", 1)
