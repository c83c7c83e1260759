"""The liveness rule of the learning tests (dssl.testing.LearningReport), on hand-made loss histories."""

from __future__ import annotations

import math

from dssl.testing import LearningReport


def report(**terms: list[float]) -> LearningReport:
    return LearningReport(
        method="m",
        steps=3,
        terms=terms,
        start={"linear_seg/miou": 5.0},
        trained={"linear_seg/miou": 5.2},
        student_start={"linear_seg/miou": 5.0},
        student_trained={"linear_seg/miou": 4.9},
    )


def test_a_learning_term_is_live():
    assert report(loss=[8.3, 8.2, 8.25], cotap_loss=[0.07, 0.065, 0.069]).dead_terms() == []


def test_zero_rounding_noise_nan_and_constant_terms_are_dead():
    # CoTAP + OAF's collapse: tied targets hold 1 - AP at float rounding noise around 0.
    collapsed = [3.397e-06, 3.427e-06, 3.457e-06]
    dead = report(
        zero=[0.0, 0.0, 0.0],
        collapsed=collapsed,
        nan=[1.0, math.nan, 1.0],
        constant=[2.0, 2.0, 2.0],
        live=[1.0, 0.9, 0.8],
    ).dead_terms()
    assert dead == ["zero", "collapsed", "nan", "constant"]


def test_gains_are_trained_minus_start_and_the_summary_names_them_and_dead_terms():
    r = report(zero=[0.0, 0.0, 0.0])
    assert math.isclose(r.gain, 0.2)
    assert math.isclose(r.student_gain, -0.1)
    assert "5.00 -> 5.20 (+0.20), student 5.00 -> 4.90 (-0.10)" in r.summary()
    assert "dead ['zero']" in r.summary()
