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

Pretrained start (``train.init_from``, :mod:`scripts.pretrain_hrm`): a fit that does not warm-start from an
earlier fold starts member *k* from the pretrained file's network *k* (modulo their number; symbol embedding
excluded) and trains ``train.epochs``. Causal: the pretrained networks saw only synthetic markets.

Pooled fit (``fit_pooled``, a universe: :mod:`lab_v10.src.dataset.panel`). One ensemble is trained on the
samples of several symbols at once. Every symbol's preprocessing above (scalers, target moments) is fitted
on its own training samples (:mod:`lab_v10.src.options.hrm_symbol`), the samples are concatenated, and each
carries its symbol id (position in the fit's symbol order), which the network reads only with
``hrm.symbol_embedding``. Predictions name the symbol; a single-symbol fit (``fit``) needs no name.

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

from lab_v10.src.config import HRMConfig, LabConfig, config_from_dict, config_to_dict
from lab_v10.src.data.store import atomic_output
from lab_v10.src.dataset.hrm_tokens import MinuteTable, daily_table, daily_windows, minute_table, minute_tokens
from lab_v10.src.dataset.samples import require_fitted
from lab_v10.src.features.intraday import INTRADAY_MODEL_COLUMNS
from lab_v10.src.options.checkpoint import (
    BEST_CHECKPOINT,
    SYMBOL_WEIGHTS,
    CheckpointError,
    pretrained_weights,
    read_weights_only,
    warm_start_weights,
)
from lab_v10.src.options.hrm_ensemble import EnsemblePredictions, combine_members, member_seeds
from lab_v10.src.options.hrm_net import HRMNet
from lab_v10.src.options.hrm_symbol import (
    SymbolInputs,
    SymbolScaling,
    concat_tensors,
    fit_symbol,
    gap_scale,
    sample_tensors,
    scaling_from_state,
    scaling_state,
    to_tensors,
)
from lab_v10.src.options.hrm_tensors import HRMTensors
from lab_v10.src.options.hrm_train import HRMTrainer

logger = logging.getLogger("lab.hrm")

CHECKPOINT_FORMAT = "lab_v10.hrm_adapter/4"  # "format" key of a saved adapter (4: per-symbol preprocessing)
SINGLE = ""  # the symbol name of a single-asset fit


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


class HRMAdapter:
    """The HRM dual network as a Book A gap forecaster and a Book B probability model (module docstring).

    ``out_dir``: the run folder for the trainer's checkpoints and logs (default: a fresh temporary folder).

    Fitted attributes: ``hrm_config_`` (the HRMConfig with the table widths and symbol count),
    ``daily_columns_``, ``universe_`` (the symbols the network has ids for, in id order), ``scalings_`` (symbol -> :class:`~lab_v10.src.options.hrm_symbol.SymbolScaling`, in
    the fit's symbol order; one entry named ``""`` after :meth:`fit`), ``trainers_`` (one HRMTrainer per
    ensemble member, holding its network), ``summaries_`` (their TrainSummary, in member order; empty after
    :meth:`load`). For a single-symbol fit, ``daily_scaler_``, ``minute_scaler_`` (None for daily-only
    data), ``y_mean_``, ``y_std_`` (Head A's target moments) and ``train_mean_`` (mean training yA in vol
    points, the R^2 benchmark) read its scaling. ``last_steps_``: ACT segments used per sample of the latest
    prediction, a DataFrame with one int column per member (``member_0``, ...) indexed by forecast date
    (:meth:`predict_daily`) or session date (the intraday methods).
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
        inputs = SymbolInputs(X_daily, X_intraday, yA, yB, train_idx, val_idx)
        return self.fit_pooled({SINGLE: inputs}, init_from=init_from)

    def fit_pooled(self, symbols: dict[str, SymbolInputs], init_from: Path | None = None,
                   universe: list[str] | None = None) -> HRMAdapter:
        """Fit one ensemble on the samples of every symbol of ``symbols`` (each as :meth:`fit` describes; an
        error names the symbol), early-stopped on all their validation samples together. ``universe``: every
        symbol the network has an id for (default: those of ``symbols``); a symbol's id is its position there,
        so fits on different subsets of one universe (a symbol joining later) share ids and weight shapes.
        Returns ``self``."""
        self.__dict__.pop("trainers_", None)  # a fit that fails below leaves the adapter unfitted
        if not symbols:
            raise ValueError("symbols: expected at least one symbol to fit on")
        universe = list(symbols) if universe is None else list(universe)
        unknown = [name for name in symbols if name not in universe]
        if unknown:
            raise ValueError(f"symbols: {unknown[0]!r} is not in the universe {universe}")
        self.universe_ = universe
        columns = [list(s.X_daily.columns) if isinstance(s.X_daily, pd.DataFrame) else [] for s in symbols.values()]
        names = list(symbols)
        for name, cols in zip(names, columns):
            if cols != columns[0]:
                raise ValueError(f"X_daily of symbol {name!r}: columns {cols} differ from symbol {names[0]!r}'s "
                                 f"{columns[0]} (expected the same daily features for every symbol)")
        self.daily_columns_ = columns[0]
        self.hrm_config_ = dataclasses.replace(
            self.config.hrm, daily_features=len(columns[0]), minute_features=len(INTRADAY_MODEL_COLUMNS),
            n_symbols=len(universe),
        )
        scalings, train_parts, val_parts = {}, [], []
        for name, inputs in symbols.items():
            try:
                scalings[name], train, val = fit_symbol(inputs, self.hrm_config_, universe.index(name))
            except ValueError as exc:
                raise ValueError(f"symbol {name}: {exc}" if name != SINGLE else str(exc)) from None
            train_parts.append(train)
            val_parts.append(val)
        self.scalings_ = scalings
        train, val = concat_tensors(train_parts), concat_tensors(val_parts)
        trainers, self.summaries_ = [], []
        seeds = member_seeds(self.config.seed, self.config.train.ensemble_size)
        for member, seed in enumerate(seeds):
            if len(seeds) > 1:
                logger.info("hrm: training ensemble member %d of %d (seed %d)", member + 1, len(seeds), seed)
            net = _build_net(self.hrm_config_, seed)
            if init_from is None:
                if self.config.train.init_from is not None:
                    weights = pretrained_weights(Path(self.config.train.init_from), self.hrm_config_, member)
                    missing, unexpected = net.load_state_dict(weights, strict=False)
                    if unexpected or [k for k in missing if k != SYMBOL_WEIGHTS]:
                        raise CheckpointError(f"{self.config.train.init_from}: train.init_from: weights do not fit "
                                              f"the network (missing {missing}, unexpected {unexpected})")
                trainer = self._trainer(net, member, seed)
            else:
                start = member_folder(init_from, member, len(seeds)) / BEST_CHECKPOINT
                net.load_state_dict(warm_start_weights(start, self.hrm_config_))
                trainer = self._trainer(net, member, seed, warm=True)
            self.summaries_.append(trainer.fit(train, val))
            trainers.append(trainer)
        self.trainers_ = trainers
        return self

    def _symbol(self, symbol: str | None) -> tuple[int, SymbolScaling]:
        """(symbol id, scaling) of ``symbol``; None names the only symbol of a single-symbol fit."""
        require_fitted(self, "trainers_")
        names = list(self.scalings_)
        if symbol is None:
            if len(names) != 1:
                raise ValueError(f"symbol: this HRM was fitted on {len(names)} symbols ({', '.join(names)}); "
                                 "name the one to predict")
            symbol = names[0]
        if symbol not in self.scalings_:
            raise ValueError(f"symbol: {symbol!r} was not among the fitted symbols ({', '.join(names)})")
        return self.universe_.index(symbol), self.scalings_[symbol]

    def _single(self) -> SymbolScaling:
        return self._symbol(None)[1]

    @property
    def daily_scaler_(self):
        return self._single().daily_scaler

    @property
    def minute_scaler_(self):
        return self._single().minute_scaler

    @property
    def y_mean_(self) -> float:
        return self._single().y_mean

    @property
    def y_std_(self) -> float:
        return self._single().y_std

    @property
    def train_mean_(self) -> float | None:
        return self._single().train_mean

    def member_dir(self, member: int) -> Path:
        """The run folder of ensemble member ``member``: ``out_dir`` for a single network, else out_dir/member_k."""
        return member_folder(self.out_dir, member, self.config.train.ensemble_size)

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

    def predict_daily(self, X_daily: pd.DataFrame, symbol: str | None = None) -> pd.DataFrame:
        """Head A for every row *t* of ``X_daily`` (of ``symbol``; None after a single-symbol fit) with
        ``daily_window`` rows of history (earlier rows are absent): ``mu`` (expected gap) and ``sigma`` (its
        standard deviation, > 0), vol points, indexed by the forecast date *t*. Reads rows ``<= t`` only; no
        minutes enter (an all-masked L input)."""
        symbol_id, scaling = self._symbol(symbol)
        daily = daily_table(X_daily, self.daily_columns_)
        window = self.hrm_config_.daily_window
        if len(daily) < window:
            raise ValueError(
                f"X_daily: {len(daily)} rows, expected at least hrm.daily_window={window} to forecast one date"
            )
        ends = np.arange(window - 1, len(daily))  # (N,)
        no_minutes = np.full(ends.shape, -1)
        samples = sample_tensors(scaling, self.hrm_config_, daily, ends, None, None, no_minutes,
                                 np.full(ends.shape, np.nan), symbol_id)
        pred = self._predict(samples, X_daily.index[ends], "a")
        scale = gap_scale(X_daily, ends, self.hrm_config_.gap_scale_column)  # (N,) or 1.0
        mu = (pred.mu * scaling.y_std + scaling.y_mean) * scale
        sigma = np.sqrt(pred.var) * scaling.y_std * scale
        return pd.DataFrame({"mu": mu, "sigma": sigma}, index=X_daily.index[ends])

    def predict_daily_mu(self, X_daily: pd.DataFrame, symbol: str | None = None) -> pd.Series:
        """The ``mu`` column of :meth:`predict_daily` (vol points, indexed by forecast date)."""
        return self.predict_daily(X_daily, symbol)["mu"]

    def predict_intraday_proba(self, X_intraday: pd.DataFrame, X_daily: pd.DataFrame,
                               symbol: str | None = None) -> pd.Series:
        """P(yB = 1) for every minute of every session in ``X_intraday`` (of ``symbol``), indexed like it
        (name ``proba``).

        Session *d* reads the ``daily_window`` rows of ``X_daily`` strictly before *d* and, at minute *m*, its
        minutes ``<= m``. All sessions run in batches; the result equals
        :meth:`predict_intraday_proba_for_day` day by day. ValueError when a session lacks that history.
        """
        symbol_id, scaling = self._symbol(symbol)
        return self._session_proba(self._checked_minutes(X_intraday, scaling), X_daily, symbol_id, scaling)

    def predict_intraday_proba_for_day(
        self, X_intraday: pd.DataFrame, day: pd.Timestamp | str, X_daily: pd.DataFrame, symbol: str | None = None
    ) -> pd.Series:
        """P(yB = 1) at each minute of session ``day`` (rows of ``X_intraday`` whose ``session`` is ``day``),
        indexed by their timestamps: daily rows strictly before ``day`` and minutes up to each one.

        Short days and missing minutes are fine. ValueError when ``day`` has no minutes or ``X_daily`` has
        fewer than ``daily_window`` rows before it.
        """
        symbol_id, scaling = self._symbol(symbol)
        if not isinstance(X_intraday, pd.DataFrame) or "session" not in X_intraday.columns:
            raise ValueError("X_intraday: expected a DataFrame with a 'session' column (session date of each minute)")
        date = pd.Timestamp(day)
        date = (date.tz_localize(None) if date.tzinfo is not None else date).normalize()
        rows = pd.DatetimeIndex(X_intraday["session"]) == date
        if not rows.any():
            raise ValueError(f"X_intraday: no minutes for session {date.date()} (expected its minute rows)")
        minutes = self._checked_minutes(X_intraday.loc[rows], scaling)
        return self._session_proba(minutes, X_daily, symbol_id, scaling)

    def _checked_minutes(self, X_intraday: pd.DataFrame, scaling: SymbolScaling) -> MinuteTable:
        if scaling.minute_scaler is None:
            raise ValueError(
                "X_intraday: this HRM was fitted on daily data only (X_intraday=None), so Head B never saw a "
                "minute; fit it with minute features to predict probabilities"
            )
        return minute_table(X_intraday, self.hrm_config_.minutes_per_day)

    def _session_proba(self, minutes: MinuteTable, X_daily: pd.DataFrame, symbol_id: int,
                       scaling: SymbolScaling) -> pd.Series:
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
        x_daily = daily_windows(scaling.daily_scaler.transform(daily), ends, window)
        tokens = minute_tokens(scaling.minute_scaler.transform(minutes.values), None, minutes.sessions, sessions)
        samples = to_tensors(x_daily, tokens, np.full(dates.shape, np.nan), symbol_id)
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
        """Write the fitted adapter to one file atomically: weights, config, columns, per-symbol scalers and
        yA moments.

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
            "universe": list(self.universe_),
            "symbols": list(self.scalings_),
            "scalings": [scaling_state(s) for s in self.scalings_.values()],
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
        adapter.universe_ = list(state["universe"])
        adapter.scalings_ = {name: scaling_from_state(s) for name, s in zip(state["symbols"], state["scalings"])}
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
