"""ACT halting on hand-made cases: decisions, exploration, "good enough to halt", Q targets, rollouts."""
from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

from lab_v10.src.config import HRMConfig, ModuleConfig
from lab_v10.src.options.act_halting import (
    act_rollout,
    freeze_halted,
    gaussian_nll,
    halt_correctness,
    halting_decision,
    minute_bce,
    ponder_cost,
    q_learning_loss,
    q_learning_targets,
    sample_min_steps,
)
from lab_v10.src.options.hrm_net import HRMCarry, HRMNet, HRMSegmentOutput

NLL_UNINFORMED = 0.5 * (1.0 + math.log(2.0 * math.pi))
BCE_UNINFORMED = math.log(2.0)
T = torch.tensor


# ----------------------------------------------------------------------------------------------
# Decisions


def test_halting_decision_cases():
    q_halt = T([1.0, 0.0, -1.0, 2.0, 0.5])
    q_cont = T([0.0, 0.0, 3.0, 0.0, 0.0])
    steps = T([1, 1, 4, 2, 1])
    # halt>cont halts; a tie continues; at max_segments always halts
    assert halting_decision(q_halt, q_cont, steps, 4, training=False).tolist() == [True, False, True, True, True]
    # eval "max": only the step count matters
    assert halting_decision(q_halt, q_cont, steps, 4, training=False, eval_mode="max").tolist() == [
        False, False, True, False, False]
    # training with exploration: no learned halt before min_steps, max_segments still wins
    min_steps = T([2, 1, 4, 2, 3])
    assert halting_decision(q_halt, q_cont, steps, 4, training=True, min_steps=min_steps).tolist() == [
        False, False, True, True, False]
    # training ignores eval_mode
    assert halting_decision(q_halt, q_cont, steps, 4, training=True, eval_mode="max").tolist() == [
        True, False, True, True, True]
    with pytest.raises(ValueError, match="eval_mode"):
        halting_decision(q_halt, q_cont, steps, 4, training=False, eval_mode="always")


def test_sample_min_steps():
    g = torch.Generator().manual_seed(0)
    assert sample_min_steps(50, 8, 0.0, g).tolist() == [1] * 50
    forced = sample_min_steps(2000, 8, 1.0, g)
    assert forced.dtype == torch.long and set(forced.tolist()) == set(range(2, 9))
    mixed = sample_min_steps(4000, 8, 0.25, g)
    assert (mixed > 1).float().mean().item() == pytest.approx(0.25, abs=0.03)
    assert sample_min_steps(5, 1, 1.0, g).tolist() == [1] * 5
    a = sample_min_steps(20, 6, 0.5, torch.Generator().manual_seed(3))
    b = sample_min_steps(20, 6, 0.5, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


# ----------------------------------------------------------------------------------------------
# "Good enough to halt"


def test_scores_on_known_values():
    # N(0, 1) and a one-sigma miss: the uninformed threshold itself
    assert gaussian_nll(T([0.0]), T([0.0]), T([1.0])).item() == pytest.approx(NLL_UNINFORMED)
    assert gaussian_nll(T([2.0]), T([math.log(4.0)]), T([2.0])).item() == pytest.approx(
        0.5 * (math.log(4.0) + math.log(2 * math.pi)))
    # logit 0 is p = 1/2: log 2 per minute whatever the label; NaN labels and padding ignored
    logits = torch.zeros(1, 6)
    y_b = T([[1.0, 0.0, float("nan"), 1.0, 1.0, 1.0]])
    mask = T([[True, True, True, True, False, False]])
    assert minute_bce(logits, y_b, mask).item() == pytest.approx(BCE_UNINFORMED)
    big = T([[4.0, -4.0, 99.0, 4.0, -50.0, -50.0]])  # confident and right on every labelled real minute
    assert minute_bce(big, y_b, mask).item() == pytest.approx(math.log1p(math.exp(-4.0)), rel=1e-5)
    assert minute_bce(logits, torch.full((1, 6), float("nan"))).item() == 0.0


def test_minute_bce_gradient_is_clean_where_labels_are_missing():
    logits = torch.zeros(2, 4, requires_grad=True)
    y_b = T([[1.0, float("nan"), 0.0, 1.0], [float("nan")] * 4])
    minute_bce(logits, y_b).sum().backward()
    assert torch.isfinite(logits.grad).all()
    assert logits.grad[0, 1] == 0 and (logits.grad[1] == 0).all() and logits.grad[0, 0] != 0


def test_halt_correctness_follows_the_definition():
    nan = float("nan")
    # (case, mu, log_var, y_a, Head-B logits for 3 minutes, labels, real-minute mask, expected)
    cases = [
        ("both good", 0.1, 0.0, 0.0, [3.0, -3.0, 3.0], [1.0, 0.0, 1.0], [1, 1, 1], True),
        ("B confidently wrong", 0.1, 0.0, 0.0, [-3.0, 3.0, -3.0], [1.0, 0.0, 1.0], [1, 1, 1], False),
        ("A misses by 3 sigma", 3.0, 0.0, 0.0, [3.0, -3.0, 3.0], [1.0, 0.0, 1.0], [1, 1, 1], False),
        ("A hides in a wide sigma", 0.0, math.log(100.0), 0.0, [3.0, -3.0, 3.0], [1.0, 0.0, 1.0], [1, 1, 1], False),
        ("A just inside 1 sigma, B just beats a coin", 0.99, 0.0, 0.0, [0.01, -0.01, 0.01], [1.0, 0.0, 1.0],
         [1, 1, 1], True),
        ("A just outside 1 sigma", 1.01, 0.0, 0.0, [3.0, -3.0, 3.0], [1.0, 0.0, 1.0], [1, 1, 1], False),
        ("B just worse than a coin", 0.0, 0.0, 0.0, [-0.01, 0.01, -0.01], [1.0, 0.0, 1.0], [1, 1, 1], False),
        ("no labels at all", 9.0, 0.0, nan, [-9.0, 9.0, 0.0], [nan, nan, nan], [1, 1, 1], True),
        ("labels only on padded minutes", 0.0, 0.0, 0.0, [3.0, -9.0, -9.0], [1.0, 1.0, 1.0], [1, 0, 0], True),
    ]
    mu, log_var, y_a = (T([c[i] for c in cases]) for i in (1, 2, 3))
    logits_b, y_b = T([c[4] for c in cases]), T([c[5] for c in cases])
    mask = T([c[6] for c in cases]).bool()
    got = halt_correctness(mu, log_var, logits_b, y_a, y_b, mask,
                           nll_threshold=NLL_UNINFORMED, bce_threshold=BCE_UNINFORMED)
    assert dict(zip([c[0] for c in cases], got.tolist())) == {c[0]: c[7] for c in cases}


def test_hrm_config_thresholds_are_the_uninformed_scores():
    cfg = HRMConfig()
    assert cfg.halt_nll_threshold == pytest.approx(NLL_UNINFORMED)
    assert cfg.halt_bce_threshold == pytest.approx(BCE_UNINFORMED)


# ----------------------------------------------------------------------------------------------
# Q-learning


def test_q_learning_targets_bootstrap_from_the_next_segment():
    correct = T([True, False, True, False])
    next_q_halt = T([2.0, -1.0, 0.0, 5.0])
    next_q_cont = T([0.0, 1.0, 4.0, 7.0])
    steps = T([1, 1, 3, 4])
    t = q_learning_targets(correct, next_q_halt, next_q_cont, steps, max_segments=4)
    assert t.halt.tolist() == [1.0, 0.0, 1.0, 0.0]
    # steps 1: next is not last -> max(next_q_halt, next_q_cont); steps 3: next (4) is last -> next_q_halt
    expected = torch.sigmoid(T([2.0, 1.0, 0.0, 5.0]))
    torch.testing.assert_close(t.cont, expected)
    assert t.cont_valid.tolist() == [True, True, True, False]
    # the ponder cost is taken off the value of continuing, never below 0
    t_cost = q_learning_targets(correct, next_q_halt, next_q_cont, steps, 4, ponder_cost=0.6)
    torch.testing.assert_close(t_cost.cont, (expected - 0.6).clamp_min(0.0))
    assert t_cost.cont[2] == 0.0  # sigmoid(0) = 0.5 < 0.6


def test_q_learning_loss_masks_inactive_samples_and_the_last_step():
    q_halt, q_cont = T([0.5, -1.0, 2.0]), T([0.0, 1.0, -2.0])
    t = q_learning_targets(T([True, False, True]), T([1.0, 1.0, 1.0]), T([0.0, 0.0, 0.0]), T([1, 2, 3]), 3)
    assert t.cont_valid.tolist() == [True, True, False]  # steps 3 = max_segments: continuing impossible
    halt = F.binary_cross_entropy_with_logits(q_halt[:2], t.halt[:2])  # sample 2 inactive (halted earlier)
    cont = F.binary_cross_entropy_with_logits(q_cont[:2], t.cont[:2])
    torch.testing.assert_close(q_learning_loss(q_halt, q_cont, t, T([True, True, False])), halt + cont)
    everyone = F.binary_cross_entropy_with_logits(q_halt, t.halt) + cont
    torch.testing.assert_close(q_learning_loss(q_halt, q_cont, t), everyone)


def test_ponder_cost_charges_each_extra_segment():
    assert ponder_cost(T([1, 2, 8]), 0.01).tolist() == pytest.approx([0.0, 0.01, 0.07])


# ----------------------------------------------------------------------------------------------
# Rollouts


def test_freeze_halted_on_tensors_and_dataclasses():
    halted = T([True, False])
    prev, cur = torch.zeros(2, 3, 4), torch.ones(2, 3, 4)
    out = freeze_halted(halted, prev, cur)
    assert (out[0] == 0).all() and (out[1] == 1).all()
    carry = freeze_halted(halted, HRMCarry(prev, prev[:, :1]), HRMCarry(cur, cur[:, :1]))
    assert isinstance(carry, HRMCarry) and carry.z_L[0].sum() == 0 and carry.z_L[1].sum() == 4


@dataclass
class ScriptedNet:
    """Duck-typed HRMNet with scripted Q values: q_halt[s][b] > 0 means sample b wants to halt at segment s."""

    cfg: HRMConfig
    q_halt: list[list[float]]

    def initial_carry(self, batch_size, t_h, t_l, device, dtype=torch.float32):
        return HRMCarry(torch.zeros(batch_size, t_h, 1, dtype=dtype), torch.zeros(batch_size, t_l, 1, dtype=dtype))

    def forward_segment(self, carry, x_daily, x_minute, minute_mask=None):
        s = int(carry.z_H[:, 0, 0].max().item())  # segments run so far by the furthest sample
        b = x_daily.shape[0]
        new = HRMCarry(carry.z_H + 1, carry.z_L + 1)
        seg = torch.full((b,), float(s + 1))
        out = HRMSegmentOutput(mu=seg, log_var=seg, logits_b=seg[:, None].expand(b, x_minute.shape[1]),
                               q_halt=T(self.q_halt[s]), q_continue=torch.zeros(b))
        return new, out


def scripted(max_segments=4, eval_halting="learned", exploration=0.0):
    script = [[-1.0, -1.0, 1.0], [1.0, -1.0, 1.0], [1.0, -1.0, 1.0], [1.0, -1.0, 1.0]]
    cfg = HRMConfig(max_segments=max_segments, eval_halting=eval_halting, halt_exploration_prob=exploration)
    return ScriptedNet(cfg, script)


def test_rollout_halts_per_sample_and_freezes_halted_samples():
    x_daily, x_minute = torch.zeros(3, 2, 1), torch.zeros(3, 5, 1)
    result = act_rollout(scripted(), x_daily, x_minute)
    assert result.steps.tolist() == [2, 4, 1]
    assert result.output.mu.tolist() == [2.0, 4.0, 1.0]  # each sample's output from its halting segment
    assert result.output.logits_b[:, -1].tolist() == [2.0, 4.0, 1.0]
    assert result.carry.z_H[:, 0, 0].tolist() == [2.0, 4.0, 1.0]  # halted carries stopped changing
    assert result.carry.z_L[:, 4, 0].tolist() == [2.0, 4.0, 1.0]


def test_rollout_eval_max_runs_every_segment_and_exploration_delays_halting():
    x_daily, x_minute = torch.zeros(3, 2, 1), torch.zeros(3, 5, 1)
    assert act_rollout(scripted(eval_halting="max"), x_daily, x_minute).steps.tolist() == [4, 4, 4]
    g = torch.Generator().manual_seed(0)
    min_steps = sample_min_steps(3, 4, 1.0, torch.Generator().manual_seed(0))
    result = act_rollout(scripted(exploration=1.0), x_daily, x_minute, training=True, generator=g)
    learned = torch.tensor([2, 4, 1])
    assert result.steps.tolist() == torch.maximum(learned, min_steps).tolist()


def test_rollout_with_the_real_network():
    cfg = HRMConfig(h=ModuleConfig(1, 16, 2, 16), l=ModuleConfig(1, 16, 2, 16), daily_features=3,
                    minute_features=2, daily_window=6, minutes_per_day=8, H_cycles=1, L_cycles=1, max_segments=3)
    torch.manual_seed(0)
    net = HRMNet(cfg)
    x_daily, x_minute = torch.randn(2, 6, 3), torch.randn(2, 8, 2)
    with torch.no_grad():
        assert act_rollout(net, x_daily, x_minute).steps.tolist() == [3, 3]  # tied Q-head: run on
        carry, _ = net.forward_segment(net.initial_carry(2, 6, 8, "cpu"), x_daily, x_minute)
        h = net.summary(carry.z_H)  # (2, d_H): what the Q-head reads after segment 1
        net.q_head.weight[0] = h.sum(0)  # q_halt = h_b . (h_0 + h_1)
        net.q_head.weight[1] = 0.0  # q_continue = 0
        assert (net.q_head(h)[:, 0] > 0).all()
        result = act_rollout(net, x_daily, x_minute)
    assert result.steps.tolist() == [1, 1]
    assert (result.output.q_halt > result.output.q_continue).all()
