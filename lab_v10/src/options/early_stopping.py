"""Early stopping and run bookkeeping of the HRM trainer (:class:`Progress`, stored in every checkpoint).

Joint (``train.early_stopping: joint``): the criterion is the validation loss ``head_a_nll + head_b_bce``
(hrm_predict.py). A lower value than the best so far is an improvement (``best.pt`` is written); after
``patience`` epochs without one, training stops and the best weights are restored.

Per head (``per_head``): the two validation terms are tracked apart. ``head_a_nll`` chooses ``best.pt``
(restored into the trainer's ``net``: Head A's forecasts) and ``head_b_bce`` chooses ``best_head_b.pt``
(restored into ``head_b_net``: Head B's probabilities); training stops when neither has improved for
``patience`` epochs. The heads share the trunk, so one set of weights cannot hold both best epochs; the
price is a second network at prediction.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class Progress:
    """Counters, early-stopping state and the metric history of a run (plain numbers, weights_only-safe)."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    skipped_steps: int = 0
    best_val_loss: float = math.inf  # the criterion of best.pt (joint loss, or head_a_nll per head)
    best_epoch: int = 0
    bad_epochs: int = 0  # epochs since the last improvement
    head_b_best_val: float = math.inf  # per_head only: head_b_bce of best_head_b.pt
    head_b_best_epoch: int = 0
    head_b_bad_epochs: int = 0
    history: list[dict[str, float]] = field(default_factory=list)

    def record_validation(self, metrics: dict[str, float], epoch: int, per_head: bool) -> tuple[bool, bool]:
        """Count epoch ``epoch`` with validation ``metrics`` (hrm_predict.validation_metrics); returns whether
        the criterion improved (write best.pt) and, per head, whether Head B's did (write best_head_b.pt)."""
        criterion = metrics["head_a_nll" if per_head else "loss"]
        improved = criterion < self.best_val_loss
        if improved:
            self.best_val_loss, self.best_epoch, self.bad_epochs = criterion, epoch, 0
        else:
            self.bad_epochs += 1
        improved_b = per_head and metrics["head_b_bce"] < self.head_b_best_val
        if improved_b:
            self.head_b_best_val, self.head_b_best_epoch, self.head_b_bad_epochs = metrics["head_b_bce"], epoch, 0
        elif per_head:
            self.head_b_bad_epochs += 1
        self.epoch = epoch
        return improved, improved_b

    def stopped(self, patience: int, per_head: bool) -> bool:
        """``patience`` epochs without improvement of the criterion (of both heads' per head)."""
        return self.bad_epochs >= patience and (not per_head or self.head_b_bad_epochs >= patience)
