"""EPICS CALC expressions are evaluated by libCom itself (postfix/calcPerform)."""
import math

import pytest

from iocs.calc_engine import CalcError, CalcExpression, evaluate


def test_arithmetic_power_and_case_insensitive_letters():
    assert evaluate("2^3") == 8.0
    assert evaluate("(A-b)/c", [5, 1, 2]) == 2.0
    assert evaluate("max(-D,min(D,(B-A)))", [0, 10, 0, 1]) == 1.0
    assert evaluate("A?1:2", [0]) == 2.0
    assert evaluate("(A+1) % B", [7, 5]) == 3.0


def test_temperature_step_is_limited_to_max_change():
    temperature = CalcExpression("A+max(-D,min(D,(B-A)))+C*(RNDM-0.5)")
    assert temperature.evaluate([20.0, 30.0, 0.0, 2.0]) == 22.0
    assert temperature.evaluate([29.5, 30.0, 0.0, 2.0]) == 30.0
    assert temperature.inputs == {"A", "B", "C", "D"}


def test_rndm_is_uniform_in_zero_one():
    rndm = CalcExpression("RNDM")
    values = [rndm.evaluate() for _ in range(200)]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert len(set(values)) > 150


def test_lorentzian_peaks_at_center():
    noisy = CalcExpression("D*(0.95+E*RNDM)/(1+((A-b)/c)^2)")
    at_center = noisy.evaluate([1.0, 1.0, 0.5, 100.0, 0.0])
    assert at_center == pytest.approx(95.0)
    one_width_away = noisy.evaluate([1.5, 1.0, 0.5, 100.0, 0.0])
    assert one_width_away == pytest.approx(47.5)


def test_division_by_zero_gives_inf_or_nan_not_an_exception():
    assert math.isinf(evaluate("1/A", [0])) or math.isnan(evaluate("1/A", [0]))


@pytest.mark.parametrize("expression, position", [
    ("A+*B", 2), ("A+B)", 3), ("max(A", 5), ("1+", 2), ("", 0)])
def test_bad_expression_is_refused_with_reason_and_position(expression, position):
    with pytest.raises(CalcError) as info:
        CalcExpression(expression)
    assert info.value.position == position
    assert f"position {position}" in str(info.value)
    assert expression in str(info.value)
