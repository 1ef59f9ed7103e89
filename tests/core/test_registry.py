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


def test_a_module_imported_twice_registers_its_parts_once(tmp_path):
    # pytest's doctest collection imports a module file a second time under another name: the same definitions
    # must not collide, while a different function under a taken name still does.
    import importlib.util

    source = (
        "from grpolab.core.advantages import ADVANTAGES\n\n\n"
        "@ADVANTAGES.register('_twice_for_test')\ndef f(r):\n    return r\n"
    )
    path = tmp_path / "twice.py"
    path.write_text(source)
    from grpolab.core.advantages import ADVANTAGES

    for module_name in ("twice_a", "twice_b"):
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    assert ADVANTAGES["_twice_for_test"].__module__ == "twice_b"
    with pytest.raises(ValueError, match="already registered"):

        @ADVANTAGES.register("_twice_for_test")
        def f(r):
            return r


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


def test_parts_declare_what_they_read():
    reg = Registry("thing")

    @reg.register("needs_ref", requires=("ref_logp",))
    def needs_ref():
        pass

    reg.add("plain", 1)
    assert reg.requires("needs_ref") == {"ref_logp"} and reg.requires("plain") == frozenset()
    with pytest.raises(UnknownNameError):
        reg.requires("missing")


def test_core_parts_declare_their_inputs():
    from grpolab.core.advantages import ADVANTAGES
    from grpolab.core.losses import POLICY_LOSSES
    from grpolab.core.regularizers import REGULARIZERS
    from grpolab.core.shaping import SHAPING

    assert ADVANTAGES.requires("gae") == {"value"} and ADVANTAGES.requires("remax") == {"greedy_reward"}
    assert ADVANTAGES.requires("grpo") == frozenset()
    assert POLICY_LOSSES.requires("ppo_clip") == {"old_logp"} and POLICY_LOSSES.requires("reinforce") == frozenset()
    assert REGULARIZERS.requires("kl") == {"ref_logp"} and REGULARIZERS.requires("entropy") == {"entropy"}
    assert SHAPING.requires("kl_reward") == {"old_logp", "ref_logp"}
