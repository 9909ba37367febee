"""training/schedule.py: each schedule's rate at given steps against a hand computation."""
import math

import pytest

from faults.errors import UserError
from training.schedule import Schedule

S = 10  # steps per epoch


def test_step_schedule_is_the_original_ports():
    s = Schedule('step', 0.01, epochs=20, steps_per_epoch=S, lr_step=8, lr_factor=0.1)
    # epochs 1-8 at 0.01, 9-16 at 0.001, 17-20 at 0.0001: step t is in epoch t // S + 1
    assert s.lr_at(0) == pytest.approx(0.01)
    assert s.lr_at(8 * S - 1) == pytest.approx(0.01)
    assert s.lr_at(8 * S) == pytest.approx(0.001)
    assert s.lr_at(16 * S) == pytest.approx(0.0001)
    assert s.lr_at(20 * S - 1) == pytest.approx(0.0001)
    assert s.momentum_at(123) == 0.9 and s.lmbd_factor(0) == 1.0


def test_warmup_climbs_linearly_and_never_starts_at_zero():
    s = Schedule('cosine', 0.05, epochs=4, steps_per_epoch=S, warmup=1)
    # warm(p) = min(1, (t/S + 1/S) / W): step 0 -> 0.1, step 4 -> 0.5, step 9 -> 1.0
    assert s.lr_at(0) == pytest.approx(0.005)
    assert s.lr_at(4) == pytest.approx(0.025)
    assert s.lr_at(9) == pytest.approx(0.05)


def test_cosine_after_warmup():
    s = Schedule('cosine', 0.05, epochs=4, steps_per_epoch=S, warmup=1)
    # annealing over epochs 1..4: r = (t/S - 1) / 3
    assert s.lr_at(10) == pytest.approx(0.05)                                  # r = 0: the peak
    assert s.lr_at(25) == pytest.approx(0.05 * (1 + math.cos(math.pi * 0.5)) / 2)   # r = 1/2: half
    assert s.lr_at(39) == pytest.approx(0.05 * (1 + math.cos(math.pi * 29 / 30.)) / 2)
    assert s.lr_at(39) > 0


def test_cosine_to_a_final_fraction_and_linear():
    s = Schedule('cosine', 0.1, epochs=2, steps_per_epoch=S, final=0.1)
    assert s.lr_at(10) == pytest.approx(0.1 * (0.1 + 0.9 * 0.5))               # r = 1/2
    lin = Schedule('linear', 0.1, epochs=2, steps_per_epoch=S)
    assert lin.lr_at(0) == pytest.approx(0.1)
    assert lin.lr_at(5) == pytest.approx(0.1 * (1 - 0.25))
    assert lin.lr_at(19) == pytest.approx(0.1 * (1 - 0.95))


def test_onecycle_moves_momentum_against_the_rate():
    s = Schedule('onecycle', 0.08, epochs=4, steps_per_epoch=S, warmup=1, momentum=0.95, momentum_low=0.85)
    assert s.momentum_at(4) == pytest.approx(0.95 - 0.10 * 0.5)                # half way up: half way down
    assert s.momentum_at(9) == pytest.approx(0.85)                             # at the peak rate
    assert s.momentum_at(25) == pytest.approx(0.85 + 0.10 * 0.5)               # half way down the cosine
    assert s.lr_at(25) == pytest.approx(0.04)


def test_lambda_warmup():
    s = Schedule('cosine', 0.05, epochs=4, steps_per_epoch=S, lmbd_warmup=2)
    assert s.lmbd_factor(0) == pytest.approx(0.05)    # (0 + 1/10) / 2
    assert s.lmbd_factor(9) == pytest.approx(0.5)
    assert s.lmbd_factor(19) == pytest.approx(1.0) and s.lmbd_factor(35) == 1.0


def test_bad_schedules():
    with pytest.raises(ValueError, match='one of'):
        Schedule('exponential', 0.1, 4, S)
    with pytest.raises(UserError, match='nothing of 4 epochs'):  # the one check of runs.records.Optim too
        Schedule('cosine', 0.1, 4, S, warmup=4)
