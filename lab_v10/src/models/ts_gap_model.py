"""TSHRMGapModel: the TimeSeriesHRM (:mod:`lab_v10.src.models.ts_hrm_adapter`) as a Book A gap forecaster
behind the lab's one model interface (``--models tshrm``; settings in the config's ``tshrm`` section).

Samples. A sample is a forecast date *t* of the dataset: the input window is the ``tshrm.window`` daily
feature rows ending at *t* (inclusive), standardized with the mean and standard deviation of the ``X_daily``
rows of the training dates only; the target is ``yA(t)``, standardized with the training labels' mean and
standard deviation. So a forecast at *t* reads daily rows ``<= t`` only (docs/design.md section 3). Dates
with fewer than ``window`` rows of history cannot be samples: they are dropped from training and validation
and are an error when forecast.

Training: ``ts_train_step`` per batch (deep supervision with ACT, one optimizer step per segment), AdamW,
batches drawn from a generator seeded with the config's ``seed``; after every epoch the validation NLL
(evaluation halting) decides early stopping, and the weights of the best epoch are kept. Forecasts are the
Gaussian head's mean and standard deviation mapped back to vol points; the ACT segments each
forecast used are returned as the ``act_segments_A`` diagnostic.
"""
from __future__ import annotations

import copy
import logging

import numpy as np
import pandas as pd
import torch
from sklearn.preprocessing import StandardScaler

from lab_v10.src.config import LabConfig
from lab_v10.src.dataset.dataset import Dataset, split_dates
from lab_v10.src.dataset.folds import Fold
from lab_v10.src.dataset.forecasts import Forecasts
from lab_v10.src.dataset.hrm_tokens import daily_windows
from lab_v10.src.dataset.samples import daily_samples, feature_frame, require_fitted
from lab_v10.src.dataset.windows import TSBatch
from lab_v10.src.models.ts_hrm_adapter import TimeSeriesHRM, TimeSeriesHRMConfig, ts_train_step
from lab_v10.src.options.device import resolve_device

logger = logging.getLogger("lab.tshrm")


class TSHRMGapModel:
    """The TimeSeriesHRM gap forecaster (module docstring). Fitted attributes: ``net_`` (the best-epoch
    TimeSeriesHRM), ``columns_``, ``scaler_`` (StandardScaler of the daily features), ``y_mean_``, ``y_std_``
    (vol points), ``best_epoch_``, ``history_`` (per epoch: mean training NLL, validation NLL, segments)."""

    name = "tshrm"
    books = ("A",)

    def __init__(self, config: LabConfig) -> None:
        self.config = config

    def _net_config(self, n_features: int) -> TimeSeriesHRMConfig:
        ts = self.config.tshrm
        return TimeSeriesHRMConfig(
            n_features=n_features, n_targets=1, t_in=ts.window, t_out=1, patch_len=ts.patch_len, h=ts.h,
            l=ts.l, H_cycles=ts.H_cycles, L_cycles=ts.L_cycles, max_segments=ts.max_segments,
            probabilistic=True, rope_base=self.config.hrm.rope_base, norm_eps=self.config.hrm.norm_eps,
        )

    def _windows(self, X_daily: pd.DataFrame, dates: pd.DatetimeIndex, role: str) -> tuple[torch.Tensor, np.ndarray]:
        """Standardized windows ``(N, window, F)`` float32 ending at ``dates`` with a full history, and a
        boolean mask ``(len(dates),)`` of those dates."""
        window = self.config.tshrm.window
        values = self.scaler_.transform(feature_frame(X_daily, self.columns_, "X_daily").to_numpy())  # (n, F)
        ends = X_daily.index.get_indexer(dates)  # (N,)
        keep = ends >= window - 1
        if not keep.any():
            raise ValueError(
                f"X_daily: none of the {ends.size} {role} dates has tshrm.window={window} rows of history"
            )
        x = daily_windows(values, ends[keep], window)  # (N_kept, window, F)
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), keep

    def fit(self, data: Dataset, fold: Fold) -> TSHRMGapModel:
        if data.yA is None:
            raise ValueError("tshrm: the data has no gap label yA (no implied vol), so there is nothing to forecast")
        train_dates, val_dates, _ = split_dates(data, fold)
        columns = list(data.X_daily.columns)
        samples = daily_samples(data.X_daily, data.yA, train_dates, val_dates, columns, require_val=True)
        self.columns_ = columns
        self.scaler_ = StandardScaler().fit(samples.X_train.to_numpy())
        self.y_mean_, self.y_std_ = float(samples.y_train.mean()), float(samples.y_train.std(ddof=0))
        if not self.y_std_ > 0:
            raise ValueError(f"yA: all training labels equal {self.y_mean_} (expected a spread to standardize)")
        batches = []
        for dates, y, role in ((train_dates, samples.y_train, "train"), (val_dates, samples.y_val, "validation")):
            x, keep = self._windows(data.X_daily, dates, role)
            if not keep.all():
                logger.info("tshrm: dropped %d of %d %s dates with fewer than window=%d rows of history",
                            int((~keep).sum()), keep.size, role, self.config.tshrm.window)
            target = (y.to_numpy(dtype=np.float32)[keep] - self.y_mean_) / self.y_std_
            batches.append(TSBatch(x, torch.from_numpy(target.astype(np.float32)).reshape(-1, 1, 1)))
        self._train(*batches)
        return self

    def _train(self, train: TSBatch, val: TSBatch) -> None:
        ts, seed = self.config.tshrm, self.config.seed
        device = resolve_device(self.config.train.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = TimeSeriesHRM(self._net_config(train.x.shape[2]))
        net.to(device)
        optimizer = torch.optim.AdamW(net.parameters(), lr=ts.lr, weight_decay=ts.weight_decay)
        generator = torch.Generator().manual_seed(seed)
        best, best_state, stale, self.history_ = float("inf"), None, 0, []
        for epoch in range(ts.epochs):
            order = torch.randperm(len(train), generator=generator)
            losses, segments = [], []
            for start in range(0, len(train), ts.batch_size):
                stats = ts_train_step(net, train.select(order[start : start + ts.batch_size]), optimizer,
                                      device=device, grad_clip=ts.grad_clip, generator=generator)
                losses.append(stats.loss)
                segments.append(stats.segments)
            val_nll = self._nll(net, val, device)
            self.history_.append({"epoch": epoch, "train_nll": float(np.mean(losses)), "val_nll": val_nll,
                                  "segments": float(np.mean(segments))})
            if val_nll < best:
                best, best_state, stale, self.best_epoch_ = val_nll, copy.deepcopy(net.state_dict()), 0, epoch
            else:
                stale += 1
                if stale >= ts.patience:
                    break
        net.load_state_dict(best_state)
        self.net_ = net.eval()

    @staticmethod
    @torch.no_grad()
    def _nll(net: TimeSeriesHRM, batch: TSBatch, device: torch.device) -> float:
        """Mean Gaussian NLL (nats) of ``net``'s forecasts on ``batch`` (evaluation halting)."""
        net.eval()
        forecast = net(batch.x.to(device))
        return float(forecast.loss(batch.y.to(device)).mean())

    @torch.no_grad()
    def predict(self, data: Dataset, dates: pd.DatetimeIndex) -> Forecasts:
        require_fitted(self, "net_")
        x, keep = self._windows(data.X_daily, dates, "forecast")
        if not keep.all():
            missing = dates[~keep][0]
            raise ValueError(f"tshrm: date {missing.date()} has fewer than tshrm.window rows of daily history")
        device = next(self.net_.parameters()).device
        rollout = self.net_.rollout(x.to(device))  # one-shot forecast: one rollout per window
        forecast = rollout.output.forecast  # params (N, 1, 1, 2)
        mu = forecast.mean[:, 0, 0].double().cpu().numpy() * self.y_std_ + self.y_mean_  # (N,) vol points
        sigma = forecast.scale[:, 0, 0].double().cpu().numpy() * self.y_std_  # (N,)
        steps = pd.DataFrame({"member_0": rollout.steps.cpu().numpy()}, index=dates)
        return Forecasts(mu=pd.Series(mu, index=dates, name="mu"), sigma=pd.Series(sigma, index=dates, name="sigma"),
                         diagnostics={"act_segments_A": steps})
