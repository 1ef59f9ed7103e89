import math

import pytest

from grpolab.core.checks import check_choice, check_int, check_number, is_int, is_number


def test_is_int_and_is_number_exclude_bools():
    assert is_int(0) and is_int(-3) and not is_int(True) and not is_int(2.0) and not is_int("2")
    assert is_number(0) and is_number(-1.5) and not is_number(False) and not is_number(None)
    assert not is_number(math.inf) and not is_number(math.nan)  # finite by default
    assert is_number(-math.inf, finite=False) and is_number(math.nan, finite=False)  # a type test only


@pytest.mark.parametrize("value", [2, 3, 100])
def test_check_int_accepts_integers_at_or_above_the_minimum(value):
    check_int("n_min", value, minimum=2, where="cures sampler")


@pytest.mark.parametrize("value", [1, -5, 2.0, True, "2", None])
def test_check_int_rejects_small_values_floats_bools_and_others(value):
    with pytest.raises(ValueError, match=r"^cures sampler: n_min must be an integer >= 2 \(paper 4\), got "):
        check_int("n_min", value, minimum=2, where="cures sampler", hint="paper 4")


def test_check_int_without_bound_or_prefix():
    check_int("k", -7)
    with pytest.raises(ValueError, match=r"^k must be an integer, got False$"):
        check_int("k", False)


@pytest.mark.parametrize("value", [0, 0.0, 0.25, 1, 1.0])
def test_check_number_inclusive_bounds(value):
    check_number("momentum", value, minimum=0, maximum=1)


@pytest.mark.parametrize("value", [-0.01, 1.5, math.nan, math.inf, True, "0.5", None])
def test_check_number_rejects_out_of_range_nan_inf_bools_and_others(value):
    with pytest.raises(ValueError, match=r"^vas sampler: momentum must be a finite number in \[0, 1\], got "):
        check_number("momentum", value, minimum=0, maximum=1, where="vas sampler")


def test_check_number_exclusive_bound_and_infinities():
    check_number("scale", 1e-12, above=0)
    with pytest.raises(ValueError, match=r"scale must be a finite number > 0, got 0.0"):
        check_number("scale", 0.0, above=0)
    check_number("max_variance", math.inf, above=0, finite=False)  # inf allowed on request ...
    with pytest.raises(ValueError, match=r"must be a number > 0 and <= 1, got nan"):  # ... NaN never
        check_number("x", math.nan, above=0, maximum=1, finite=False)
    check_number("threshold", -3.5)  # no bounds: any finite number


def test_check_choice_message_is_the_shared_one():
    with pytest.raises(ValueError, match=r"^dual verifier: mode must be one of \['auto', 'text'\], got 'fuzzy'$"):
        check_choice("dual verifier", "mode", "fuzzy", ("auto", "text"))
