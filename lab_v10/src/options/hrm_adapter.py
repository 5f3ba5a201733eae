"""HRMAdapter: the HRM dual network behind the lab's model interface (both books from one model).

Samples (docs/design.md section 3; token layout in :mod:`lab_v10.src.dataset.hrm_tokens`). A sample is keyed by a
forecast date *t*, a row of ``X_daily``:

- H tokens: the ``hrm.daily_window`` rows of ``X_daily`` ending at *t* (inclusive);
- Head A target: ``yA(t)``, the vol gap forecast at the close of *t*;
- L tokens: the minutes of the next session *d* of ``X_intraday`` (its ``session`` column) after *t*, with
  their ``yB``, provided *t* is the last daily row before *d* (normally *d* = *t*+1); otherwise, and for
  daily-only data, the sample has no minutes (an all-False mask).

So Head A at *t* reads daily rows ``<= t``; the probability at minute *m* of day *d* reads daily rows
``<= d-1`` and minutes ``<= m`` of *d* (the L-module is causal, and nothing flows from L to H). Dates with
fewer than ``daily_window`` rows of history cannot be samples: they are dropped from training and validation
(count logged on logger ``lab.hrm``) and are absent from :meth:`HRMAdapter.predict_daily`'s output, so pass
the full ``X_daily`` history when predicting, not just the test rows.

Preprocessing is fitted on the training samples only: a StandardScaler of the daily features on the
``X_daily`` rows of the training dates, one of the minute features
(:data:`~lab_v10.src.features.intraday.INTRADAY_MODEL_COLUMNS`) on every minute of the training samples'
sessions, and the mean and standard deviation of Head A's target over the training labels; the network is
trained on the standardized target and its forecasts are mapped back to vol points. Head A's target is
``yA(t) / X_daily[hrm.gap_scale_column](t)`` (default ``iv``: the gap in units of the implied vol known at the
close of *t*; a causal scale, so a forecast still reads rows ``<= t`` only), and ``mu`` and ``sigma`` are
multiplied by the same value; with ``gap_scale_column: null`` the target is ``yA`` in vol points. Training,
early stopping on the validation samples and the restore of the best weights are
:class:`~lab_v10.src.options.hrm_train.HRMTrainer`'s; with ``train.early_stopping: per_head`` each network
keeps two weight sets, and ``mu``, ``sigma`` come from the one at Head A's best validation epoch, the minute
probabilities from the one at Head B's.

Ensemble (``train.ensemble_size`` = K, :mod:`lab_v10.src.options.hrm_ensemble`). ``fit`` trains K networks
one after the other on the same samples and scalers, member *k* from its own seed into its own folder
(``out_dir/member_k``; ``out_dir`` itself when K = 1); the forecasts are the mixture of the members'. Each
member reads only what a single network reads, so the time semantics above hold for the ensemble.

Warm start (``fit(..., init_from=folder)``, ``train.warm_start``): member *k* starts from the best weights
(``best.pt``) of member *k* of an earlier fit whose run folder is ``folder`` and trains
``train.warm_start_epochs`` epochs of ``train.warm_start_samples`` samples; the scalers and the target's
moments are still fitted on this fit's training samples. Causal when that fit's training and validation
labels end before this fit's test dates (walk-forward: the previous fold, :mod:`~lab_v10.src.options.hrm_model`).

Input conventions and checks are those of :mod:`lab_v10.src.dataset.samples` (a bad table, date, label or
value raises ValueError naming it).
"""
from __future__ import annotations

import dataclasses
import logging
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.preprocessing import StandardScaler

from lab_v10.src.config import HRMConfig, LabConfig, config_from_dict, config_to_dict
from lab_v10.src.data.store import atomic_output
from lab_v10.src.dataset.hrm_tokens import (
    MinuteTable,
    MinuteTokens,
    Sessions,
    daily_table,
    daily_windows,
    minute_table,
    minute_tokens,
    next_session,
)
from lab_v10.src.dataset.samples import daily_samples, intraday_samples, require_fitted
from lab_v10.src.features.intraday import INTRADAY_MODEL_COLUMNS
from lab_v10.src.options.checkpoint import BEST_CHECKPOINT, CheckpointError, read_weights_only, warm_start_weights
from lab_v10.src.options.hrm_ensemble import EnsemblePredictions, combine_members, member_seeds
from lab_v10.src.options.hrm_net import HRMNet
from lab_v10.src.options.hrm_tensors import HRMTensors
from lab_v10.src.options.hrm_train import HRMTrainer

logger = logging.getLogger("lab.hrm")

CHECKPOINT_FORMAT = "lab_v10.hrm_adapter/3"  # "format" key of a saved adapter (3: adds per-head Head-B nets)
NO_SESSIONS = Sessions(np.zeros(0, "datetime64[ns]"), np.zeros(0, np.int64), np.zeros(0, np.int64))


def _scaler_state(scaler: StandardScaler) -> dict:
    """A fitted StandardScaler as tensors and ints (for a weights_only checkpoint)."""
    return {
        "mean": torch.from_numpy(scaler.mean_.copy()),
        "var": torch.from_numpy(scaler.var_.copy()),
        "scale": torch.from_numpy(scaler.scale_.copy()),
        "n_samples_seen": int(scaler.n_samples_seen_),
    }


def _scaler_from_state(state: dict) -> StandardScaler:
    """The StandardScaler that :func:`_scaler_state` saved (same mean_, var_, scale_: same transform)."""
    scaler = StandardScaler()
    scaler.mean_ = state["mean"].numpy().astype(np.float64)
    scaler.var_ = state["var"].numpy().astype(np.float64)
    scaler.scale_ = state["scale"].numpy().astype(np.float64)
    scaler.n_samples_seen_ = state["n_samples_seen"]
    scaler.n_features_in_ = scaler.mean_.shape[0]
    return scaler


def _build_net(hrm: HRMConfig, seed: int) -> HRMNet:
    """HRMNet(hrm) initialised from ``seed`` without touching torch's global random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return HRMNet(hrm)


def member_folder(root: Path, member: int, ensemble_size: int) -> Path:
    """The run folder of ensemble member ``member`` under ``root``: ``root`` itself for one network."""
    return Path(root) if ensemble_size == 1 else Path(root) / f"member_{member}"


def _cpu_state(net: HRMNet) -> dict[str, torch.Tensor]:
    """``net``'s state dict as detached CPU tensors (for a saved adapter)."""
    return {k: v.detach().to("cpu") for k, v in net.state_dict().items()}


def _tensors(x_daily: np.ndarray, tokens: MinuteTokens, y_a: np.ndarray) -> HRMTensors:
    """HRMTensors (float32 CPU) from windows ``(N, T_H, F_d)``, L tokens and standardized ``y_a`` ``(N,)``."""
    return HRMTensors(
        x_daily=torch.from_numpy(np.ascontiguousarray(x_daily, dtype=np.float32)),
        x_minute=torch.from_numpy(np.ascontiguousarray(tokens.x, dtype=np.float32)),
        minute_mask=torch.from_numpy(tokens.mask),
        y_a=torch.from_numpy(np.asarray(y_a, dtype=np.float32)),
        y_b=torch.from_numpy(np.asarray(tokens.y, dtype=np.float32)),
    )


class HRMAdapter:
    """The HRM dual network as a Book A gap forecaster and a Book B probability model (module docstring).

    ``out_dir``: the run folder for the trainer's checkpoints and logs (default: a fresh temporary folder).

    Fitted attributes: ``hrm_config_`` (the HRMConfig with the table widths), ``daily_columns_``,
    ``daily_scaler_`` and ``minute_scaler_`` (StandardScalers; the latter None for daily-only data),
    ``y_mean_``, ``y_std_`` (of Head A's target: yA over the scale column, or vol points without one),
    ``train_mean_`` (mean training yA in vol points, the R^2 benchmark),
    ``trainers_`` (one HRMTrainer per ensemble member, holding its network), ``summaries_`` (their
    TrainSummary, in member order; empty after :meth:`load`). ``last_steps_``: ACT segments used per sample
    of the latest prediction, a DataFrame with one int column per member (``member_0``, ...) indexed by
    forecast date (:meth:`predict_daily`) or session date (the intraday methods).
    """

    name = "hrm"

    def __init__(self, config: LabConfig, out_dir: Path | None = None) -> None:
        self.config = config
        self.out_dir = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="hrm_adapter_"))

    # ------------------------------------------------------------------------------------------
    # Fit

    def fit(
        self,
        X_daily: pd.DataFrame,
        X_intraday: pd.DataFrame | None,
        yA: pd.Series | None,
        yB: pd.Series | None,
        train_idx: pd.DatetimeIndex,
        val_idx: pd.DatetimeIndex,
        init_from: Path | None = None,
    ) -> HRMAdapter:
        """Fit on the samples of the ``train_idx`` forecast dates, early-stop on those of ``val_idx``.

        Every train and validation date needs an ``X_daily`` row and a finite ``yA`` (purge unlabeled dates
        first); dates with fewer than ``daily_window`` rows of history are dropped (logged). ``X_intraday``
        and ``yB`` are both given or both None (daily-only: Head B sees no minutes). With minutes, ``yB``
        needs a row for every minute of the paired sessions, the training minutes both classes and the
        validation sessions some labelled minute. ``yA=None`` (no implied vol, so no gap label) trains Head B
        only: Head A's loss is masked, ``train_mean_`` is None and ``predict_daily`` is meaningless.
        ``init_from``: warm start from the run folder of an earlier fit (module docstring). Returns ``self``.
        """
        self.__dict__.pop("trainers_", None)  # a fit that fails below leaves the adapter unfitted
        if (X_intraday is None) != (yB is None):
            raise ValueError("X_intraday, yB: expected both (minute features and their labels) or neither")
        columns = list(X_daily.columns) if isinstance(X_daily, pd.DataFrame) else []
        daily = daily_table(X_daily, columns)  # (n, F_d)
        has_gap_label = yA is not None
        if not has_gap_label and X_intraday is None:
            raise ValueError("yA, X_intraday: expected the gap labels, the minutes, or both (nothing to learn)")
        # Without yA, a zero label series only lets daily_samples check the dates and features; the labels
        # themselves are replaced by NaN below, which masks Head A's loss.
        labels_a = yA if has_gap_label else pd.Series(0.0, index=X_daily.index)
        samples = daily_samples(X_daily, labels_a, train_idx, val_idx, columns, require_val=True)
        train_pos, y_train = self._with_history(X_daily.index, samples.y_train, "train")
        val_pos, y_val = self._with_history(X_daily.index, samples.y_val, "validation")

        self.daily_columns_ = columns
        self.daily_scaler_ = StandardScaler().fit(daily[train_pos])
        if has_gap_label:
            self.train_mean_ = float(np.mean(y_train))
            y_train = y_train / self._gap_scale(X_daily, train_pos)
            y_val = y_val / self._gap_scale(X_daily, val_pos)
            self.y_mean_, self.y_std_ = float(np.mean(y_train)), float(np.std(y_train))
            if not self.y_std_ > 0:
                raise ValueError(
                    f"yA: all {y_train.size} training targets equal {self.y_mean_} (expected a spread to standardize)"
                )
        else:
            y_train, y_val = np.full(y_train.shape, np.nan), np.full(y_val.shape, np.nan)
            self.y_mean_, self.y_std_, self.train_mean_ = 0.0, 1.0, None

        minutes, labels = None, None
        train_sessions = np.full(train_pos.shape, -1)
        val_sessions = np.full(val_pos.shape, -1)
        if X_intraday is not None:
            minutes = minute_table(X_intraday, self.config.hrm.minutes_per_day)
            pair = next_session(X_daily.index.as_unit("ns").to_numpy(), minutes.sessions.dates)  # (n,)
            train_sessions, val_sessions = pair[train_pos], pair[val_pos]
            if (train_sessions < 0).all():
                raise ValueError(
                    "X_intraday: no session follows any training date (expected the minutes of the sessions "
                    "after the training dates; pass X_intraday=None, yB=None for daily-only data)"
                )
            session_dates = pd.DatetimeIndex(minutes.sessions.dates)
            # the shared Book B checks on the paired sessions: yB rows present, 0/1/NaN, both classes in training
            intraday_samples(
                X_intraday, yB, session_dates[train_sessions[train_sessions >= 0]],
                session_dates[val_sessions[val_sessions >= 0]], INTRADAY_MODEL_COLUMNS,
            )
            starts = minutes.sessions.starts[train_sessions[train_sessions >= 0]]
            stops = minutes.sessions.stops[train_sessions[train_sessions >= 0]]
            train_rows = np.concatenate([np.arange(a, b) for a, b in zip(starts, stops)])
            self.minute_scaler_ = StandardScaler().fit(minutes.values[train_rows])
            labels = yB.reindex(X_intraday.index).to_numpy(dtype=float)  # (n_min,)
        else:
            self.minute_scaler_ = None

        self.hrm_config_ = dataclasses.replace(
            self.config.hrm, daily_features=len(columns), minute_features=len(INTRADAY_MODEL_COLUMNS)
        )
        train = self._sample_tensors(daily, train_pos, minutes, labels, train_sessions, y_train)
        val = self._sample_tensors(daily, val_pos, minutes, labels, val_sessions, y_val)
        trainers, self.summaries_ = [], []
        seeds = member_seeds(self.config.seed, self.config.train.ensemble_size)
        for member, seed in enumerate(seeds):
            if len(seeds) > 1:
                logger.info("hrm: training ensemble member %d of %d (seed %d)", member + 1, len(seeds), seed)
            net = _build_net(self.hrm_config_, seed)
            if init_from is None:
                trainer = self._trainer(net, member, seed)
            else:
                start = member_folder(init_from, member, len(seeds)) / BEST_CHECKPOINT
                net.load_state_dict(warm_start_weights(start, self.hrm_config_))
                trainer = self._trainer(net, member, seed, warm=True)
            self.summaries_.append(trainer.fit(train, val))
            trainers.append(trainer)
        self.trainers_ = trainers
        return self

    def _gap_scale(self, X_daily: pd.DataFrame, rows: np.ndarray) -> np.ndarray | float:
        """``X_daily[hrm.gap_scale_column]`` at positions ``rows`` (N,), checked > 0; 1.0 without a scale column."""
        column = self.config.hrm.gap_scale_column
        if column is None:
            return 1.0
        if column not in X_daily.columns:
            raise ValueError(
                f"X_daily: no column {column!r} (hrm.gap_scale_column: Head A forecasts yA / {column}; pass daily "
                f"features with implied vol, or set hrm.gap_scale_column: null to forecast yA in vol points)"
            )
        scale = X_daily[column].to_numpy(dtype=float)[rows]  # (N,)
        bad = np.flatnonzero(~(scale > 0))
        if bad.size:
            row = rows[bad[0]]
            raise ValueError(
                f"X_daily: column {column!r} at row {row} ({X_daily.index[row].date()}) is {scale[bad[0]]} "
                f"(expected > 0: hrm.gap_scale_column divides yA)"
            )
        return scale

    def member_dir(self, member: int) -> Path:
        """The run folder of ensemble member ``member``: ``out_dir`` for a single network, else out_dir/member_k."""
        return member_folder(self.out_dir, member, self.config.train.ensemble_size)

    def _with_history(
        self, dates: pd.DatetimeIndex, y: pd.Series, role: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """Row positions (ascending) and labels ``(N,)`` of the sample dates with a full daily window.

        Drops (and logs) dates with fewer than ``daily_window`` rows up to and including them; raises when
        none is left.
        """
        window = self.config.hrm.daily_window
        pos = dates.get_indexer(y.index)  # (N,) every date is a row (checked by daily_samples)
        keep = pos >= window - 1
        if not keep.any():
            raise ValueError(
                f"X_daily: none of the {pos.size} {role} dates has hrm.daily_window={window} rows of history "
                f"(the latest has {int(pos.max(initial=-1)) + 1}); expected earlier daily rows"
            )
        if not keep.all():
            logger.info(
                "hrm: dropped %d of %d %s dates with fewer than daily_window=%d rows of history",
                int((~keep).sum()), pos.size, role, window,
            )
        order = np.argsort(pos[keep], kind="stable")
        return pos[keep][order], y.to_numpy(dtype=float)[keep][order]

    def _sample_tensors(
        self,
        daily: np.ndarray,
        ends: np.ndarray,
        minutes: MinuteTable | None,
        labels: np.ndarray | None,
        sessions: np.ndarray,
        y_a: np.ndarray,
    ) -> HRMTensors:
        """Standardized samples: windows ending at row ``ends`` ``(N,)``, the minutes of session positions
        ``sessions`` ``(N,)`` (-1: none) and Head A's target ``y_a`` ``(N,)`` (NaN: no label), standardized here."""
        x_daily = daily_windows(self.daily_scaler_.transform(daily), ends, self.hrm_config_.daily_window)
        if minutes is None:
            tokens = minute_tokens(np.zeros((0, self.hrm_config_.minute_features)), None, NO_SESSIONS, sessions)
        else:
            tokens = minute_tokens(self.minute_scaler_.transform(minutes.values), labels, minutes.sessions, sessions)
        return _tensors(x_daily, tokens, (y_a - self.y_mean_) / self.y_std_)

    def _trainer(self, net: HRMNet, member: int, seed: int, warm: bool = False) -> HRMTrainer:
        """The trainer of ensemble member ``member`` (its batch order drawn from ``seed``); ``warm``: with the warm
        start's epochs and samples per epoch."""
        train, samples = self.config.train, None
        if warm:
            train, samples = dataclasses.replace(train, epochs=train.warm_start_epochs), train.warm_start_samples
        return HRMTrainer(net, self.hrm_config_, train, self.member_dir(member), seed=seed, device=train.device,
                          samples_per_epoch=samples)

    # ------------------------------------------------------------------------------------------
    # Predict

    def predict_daily(self, X_daily: pd.DataFrame) -> pd.DataFrame:
        """Head A for every row *t* of ``X_daily`` with ``daily_window`` rows of history (earlier rows are
        absent): ``mu`` (expected gap) and ``sigma`` (its standard deviation, > 0), vol points, indexed by
        the forecast date *t*. Reads rows ``<= t`` only; no minutes enter (an all-masked L input)."""
        require_fitted(self, "trainers_")
        daily = daily_table(X_daily, self.daily_columns_)
        window = self.hrm_config_.daily_window
        if len(daily) < window:
            raise ValueError(
                f"X_daily: {len(daily)} rows, expected at least hrm.daily_window={window} to forecast one date"
            )
        ends = np.arange(window - 1, len(daily))  # (N,)
        no_minutes = np.full(ends.shape, -1)
        samples = self._sample_tensors(daily, ends, None, None, no_minutes, np.full(ends.shape, np.nan))
        pred = self._predict(samples, X_daily.index[ends], "a")
        scale = self._gap_scale(X_daily, ends)  # (N,) or 1.0
        mu = (pred.mu * self.y_std_ + self.y_mean_) * scale
        sigma = np.sqrt(pred.var) * self.y_std_ * scale
        return pd.DataFrame({"mu": mu, "sigma": sigma}, index=X_daily.index[ends])

    def predict_daily_mu(self, X_daily: pd.DataFrame) -> pd.Series:
        """The ``mu`` column of :meth:`predict_daily` (vol points, indexed by forecast date)."""
        return self.predict_daily(X_daily)["mu"]

    def predict_intraday_proba(self, X_intraday: pd.DataFrame, X_daily: pd.DataFrame) -> pd.Series:
        """P(yB = 1) for every minute of every session in ``X_intraday``, indexed like it (name ``proba``).

        Session *d* reads the ``daily_window`` rows of ``X_daily`` strictly before *d* and, at minute *m*, its
        minutes ``<= m``. All sessions run in batches; the result equals
        :meth:`predict_intraday_proba_for_day` day by day. ValueError when a session lacks that history.
        """
        require_fitted(self, "trainers_")
        return self._session_proba(self._checked_minutes(X_intraday), X_daily)

    def predict_intraday_proba_for_day(
        self, X_intraday: pd.DataFrame, day: pd.Timestamp | str, X_daily: pd.DataFrame
    ) -> pd.Series:
        """P(yB = 1) at each minute of session ``day`` (rows of ``X_intraday`` whose ``session`` is ``day``),
        indexed by their timestamps: daily rows strictly before ``day`` and minutes up to each one.

        Short days and missing minutes are fine. ValueError when ``day`` has no minutes or ``X_daily`` has
        fewer than ``daily_window`` rows before it.
        """
        require_fitted(self, "trainers_")
        if not isinstance(X_intraday, pd.DataFrame) or "session" not in X_intraday.columns:
            raise ValueError("X_intraday: expected a DataFrame with a 'session' column (session date of each minute)")
        date = pd.Timestamp(day)
        date = (date.tz_localize(None) if date.tzinfo is not None else date).normalize()
        rows = pd.DatetimeIndex(X_intraday["session"]) == date
        if not rows.any():
            raise ValueError(f"X_intraday: no minutes for session {date.date()} (expected its minute rows)")
        return self._session_proba(self._checked_minutes(X_intraday.loc[rows]), X_daily)

    def _checked_minutes(self, X_intraday: pd.DataFrame) -> MinuteTable:
        if self.minute_scaler_ is None:
            raise ValueError(
                "X_intraday: this HRM was fitted on daily data only (X_intraday=None), so Head B never saw a "
                "minute; fit it with minute features to predict probabilities"
            )
        return minute_table(X_intraday, self.hrm_config_.minutes_per_day)

    def _session_proba(self, minutes: MinuteTable, X_daily: pd.DataFrame) -> pd.Series:
        """Head B over every session of ``minutes`` (one sample per session), in row order."""
        daily = daily_table(X_daily, self.daily_columns_)
        window = self.hrm_config_.daily_window
        dates = minutes.sessions.dates  # (S,)
        ends = np.searchsorted(X_daily.index.as_unit("ns").to_numpy(), dates, side="left") - 1  # last row < d
        short = np.flatnonzero(ends < window - 1)
        if short.size:
            s = short[0]
            raise ValueError(
                f"X_daily: {ends[s] + 1} rows before session {pd.Timestamp(dates[s]).date()} (expected at least "
                f"hrm.daily_window={window} daily rows strictly before the day)"
            )
        sessions = np.arange(dates.size)
        x_daily = daily_windows(self.daily_scaler_.transform(daily), ends, window)
        tokens = minute_tokens(self.minute_scaler_.transform(minutes.values), None, minutes.sessions, sessions)
        samples = _tensors(x_daily, tokens, np.full(dates.shape, np.nan))
        pred = self._predict(samples, pd.DatetimeIndex(dates), "b")
        # sessions are ascending and contiguous, so the real minutes in (sample, offset) order are the rows in order
        return pd.Series(pred.proba_b[tokens.mask], index=minutes.index, name="proba")

    def _predict(self, samples: HRMTensors, keys: pd.DatetimeIndex, head: str) -> EnsemblePredictions:
        """The members' combined outputs from the network each keeps for ``head`` ("a": ``net``, "b":
        ``head_b_net``; the same one under joint early stopping): only that head's fields are the forecast.
        ``last_steps_`` records those networks' segments."""
        preds = [
            trainer.predict_network(trainer.net if head == "a" else trainer.head_b_net, samples)
            for trainer in self.trainers_
        ]
        pred = combine_members(preds)
        columns = [f"member_{k}" for k in range(pred.steps.shape[1])]
        self.last_steps_ = pd.DataFrame(pred.steps, index=keys, columns=columns)
        return pred

    # ------------------------------------------------------------------------------------------
    # Persistence

    def save(self, path: str | Path) -> Path:
        """Write the fitted adapter to one file atomically: weights, config, scalers, columns, yA moments.

        Only tensors and primitive containers are stored, so :meth:`load` reads it with
        ``torch.load(weights_only=True)``.
        """
        require_fitted(self, "trainers_")
        state = {
            "format": CHECKPOINT_FORMAT,
            "config": config_to_dict(dataclasses.replace(self.config, hrm=self.hrm_config_)),
            "nets": [_cpu_state(trainer.net) for trainer in self.trainers_],
            # per-head early stopping: each member's second network (Head B's best epoch); None when joint
            "head_b_nets": (
                [_cpu_state(trainer.head_b_net) for trainer in self.trainers_]
                if self.config.train.early_stopping == "per_head" else None
            ),
            "daily_columns": list(self.daily_columns_),
            "daily_scaler": _scaler_state(self.daily_scaler_),
            "minute_scaler": None if self.minute_scaler_ is None else _scaler_state(self.minute_scaler_),
            "y_mean": self.y_mean_,
            "y_std": self.y_std_,
            "train_mean": self.train_mean_,
        }
        with atomic_output(path) as tmp:
            torch.save(state, tmp)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, out_dir: Path | None = None) -> HRMAdapter:
        """The adapter :meth:`save` wrote to ``path``; its predictions equal the saved adapter's. CheckpointError
        (a LabError naming ``path``) when the file is missing, damaged or not an adapter file."""
        path = Path(path)
        state = read_weights_only(path, "HRM adapter file")
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path}: not an HRM adapter checkpoint (expected format {CHECKPOINT_FORMAT!r}, "
                                  "the hrm_adapter.pt of a run)")
        config = config_from_dict(state["config"], f"{path}: config")
        adapter = cls(config, out_dir)
        adapter.hrm_config_ = config.hrm
        adapter.daily_columns_ = list(state["daily_columns"])
        adapter.daily_scaler_ = _scaler_from_state(state["daily_scaler"])
        adapter.minute_scaler_ = None if state["minute_scaler"] is None else _scaler_from_state(state["minute_scaler"])
        adapter.y_mean_, adapter.y_std_ = float(state["y_mean"]), float(state["y_std"])
        adapter.train_mean_ = None if state["train_mean"] is None else float(state["train_mean"])
        seeds = member_seeds(config.seed, config.train.ensemble_size)
        if len(state["nets"]) != len(seeds):
            raise CheckpointError(
                f"{path}: {len(state['nets'])} networks stored, expected train.ensemble_size={len(seeds)}"
            )
        head_b = state["head_b_nets"]
        stored = 0 if head_b is None else len(head_b)
        expected = len(seeds) if config.train.early_stopping == "per_head" else 0
        if stored != expected:
            raise CheckpointError(
                f"{path}: {stored} Head-B networks stored, expected {expected} for train.early_stopping="
                f"{config.train.early_stopping}"
            )
        trainers = []
        for member, (seed, weights) in enumerate(zip(seeds, state["nets"])):
            net = _build_net(config.hrm, seed)
            net.load_state_dict(weights)
            trainer = adapter._trainer(net, member, seed)
            if expected:
                trainer.head_b_net = _build_net(config.hrm, seed).to(trainer.device)
                trainer.head_b_net.load_state_dict(head_b[member])
            trainers.append(trainer)
        adapter.trainers_ = trainers
        adapter.summaries_ = []
        return adapter
