"""`pss demo`'s verdict names a winner only when the gap exceeds the validation noise."""
import math

import pytest

from pss.demo import accuracy_noise, verdict


def rows(pss: float, equal: float, base: float) -> list[dict]:
    return [{"run": "baseline", "final_acc1": base, "epochs": 4},
            {"run": "pss", "final_acc1": pss, "epochs": 4, "time_vs_first": 0.6},
            {"run": "baseline_equal_time", "final_acc1": equal, "epochs": 2}]


def test_noise_is_the_standard_error_of_the_difference():
    assert accuracy_noise(50, 50, 100) == pytest.approx(100 * math.sqrt(0.5 / 100))
    assert accuracy_noise(100, 100, 10) == 0 and accuracy_noise(10.9, 7.8, 64) == pytest.approx(5.14, abs=0.01)


def test_chance_level_gap_on_a_tiny_set_is_too_close_to_call():
    # What the demo once called a win: 10.9 % vs 7.8 % on 64 images (two standard errors: 10.3 points).
    text = verdict(rows(10.9, 7.8, 9.4), 64)
    assert "Same training time: too close to call. PSS 10.90% vs 7.80%" in text
    assert "+3.10 points; the noise, two standard errors on 64 validation images, is 10.28" in text
    assert "Against the full baseline (9.40%): too close to call" in text and "won" not in text


def test_a_gap_well_outside_the_noise_names_the_winner_both_ways():
    text = verdict(rows(95.0, 60.0, 96.0), 500)
    assert text.startswith("Same training time: PSS won. PSS 95.00% vs 60.00%")
    assert "Against the full baseline (96.00%): too close to call (-1.00 points" in text
    text = verdict(rows(60.0, 95.0, 96.0), 500)
    assert "Same training time: the equal-time baseline won." in text
    assert "Against the full baseline (96.00%): the full baseline won (-36.00 points" in text
