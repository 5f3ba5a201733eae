"""Typed lab configuration loaded from YAML.

One dataclass per section, each field's range check beside its default (:func:`checked`). :func:`load_config`
reads a YAML file (:func:`read_yaml`: UTF-8, no repeated key, dates as text) into a :class:`LabConfig`, rejecting
unknown keys, wrong types, non-finite floats and out-of-range values with a ConfigError naming file and key::

    config/small.yaml: hrm.l.d_model: expected int > 0, got '768x'

Units and time semantics are stated in each field's comment. The reading, converting and checking machinery
lives in :mod:`lab_v10.src.config_loading`; its public names are importable from here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lab_v10.src.config_loading import (  # noqa: F401  (re-exported: callers import them from here)
    ALL_POSITIVE,
    NON_NEGATIVE,
    OPEN_UNIT,
    POSITIVE,
    PROBABILITY,
    SEED,
    SESSION_DATE,
    YAML11_EXPONENT,
    Check,
    StrictLoader,
    apply_overrides,
    build_config,
    checked,
    checked_list,
    config_to_dict,
    read_yaml,
    validate_config,
)


@dataclass
class SyntheticConfig:
    """Synthetic market generator settings (see data/README.md for the generating process)."""

    n_days: int = checked(1000, POSITIVE)  # trading days generated
    minutes_per_day: int = checked(390, (lambda v: 1 <= v <= 390, "in 1..390 (XNYS session)"))
    start: str = checked("2015-01-02", SESSION_DATE)  # first session date (business days follow)
    initial_price: float = checked(100.0, POSITIVE)  # of every symbol, at the close before the first session
    # symbols SYN0, SYN1, ... of the synthetic universe (1: the single market, bit for bit)
    n_symbols: int = checked(1, (lambda v: v >= 1, ">= 1"))
    # share of the variance of every symbol's diffusive shocks and log-vol innovations that comes from the
    # common market factor (n_symbols > 1): the cross-symbol correlation of those shocks
    market_factor_share: float = checked(0.5, PROBABILITY)


@dataclass
class DataConfig:
    """Where market data comes from.

    ``source``: ``synthetic`` (embedded generator, default; a universe when ``synthetic.n_symbols`` > 1),
    ``arch`` (real S&P 500 + VIX shipped in the ``arch`` package, daily only), ``files``
    (``daily``/``iv``/``minutes`` paths) or ``universe`` (the manifest ``universe`` lists each symbol's files;
    :mod:`lab_v10.src.data.universe`).
    """

    source: Literal["synthetic", "arch", "files", "universe"] = "synthetic"
    universe: str | None = None  # universe manifest YAML: symbols: {SYM: {daily, iv[, minutes]}}
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    daily: str | None = None  # CSV/Parquet date,open,high,low,close[,volume][,iv]
    iv: str | None = None  # Cboe VIX_History.csv layout or date,iv (annualized %)
    minutes: str | None = None  # CSV/Parquet timestamp,open,high,low,close,volume
    tz: str = "America/New_York"  # exchange time zone of the minute bars after loading
    minutes_source_tz: str | None = None  # time zone of naive minute timestamps (None = already exchange tz)
    calendar: str = "XNYS"  # exchange_calendars code used for sessions, holidays and half days
    fill_missing_minutes: bool = False  # fill missing minutes after each session's first bar (logged)
    # Plausibility checks (data/README.md, "Plausibility checks"): each stops the run unless relaxed here;
    # every repair is counted in a log line and in the report's data.data_checks.
    check_iv_units: bool = True  # iv in 1..500 vol points and 0.1..10x realised vol (--allow-implausible-iv)
    drop_bad_prints: bool = False  # drop rows with a >5x jump that reverts within 3 rows (--drop-bad-prints)
    drop_non_sessions: bool = False  # drop daily rows on weekends/holidays of `calendar` (--drop-non-sessions)
    # a daily date inside the IV file's range without IV: "error", or "drop" its daily row (counted, reported)
    iv_missing: Literal["error", "drop"] = "error"
    max_missing_sessions: int = checked(10, NON_NEGATIVE)  # longest run of sessions a daily file may skip
    check_minute_sessions: bool = True  # stop when minutes miss the sessions (--allow-minutes-outside-session)
    # minute prices outside the daily bar's range (e.g. a split between split-adjusted daily bars and as-traded
    # minutes): "error", or "rescale" those sessions' minutes by the split ratio (counted, reported)
    minutes_vs_daily: Literal["error", "rescale"] = "error"


@dataclass
class FeatureConfig:
    """Causal feature settings. All windows count bars that are known at the row's information time."""

    # trailing windows (trading days) of the HAR realized-vol and range-vol averages
    har_windows: list[int] = checked_list(lambda: [1, 5, 22], ALL_POSITIVE)
    # IV changes iv(t) - iv(t-k), k in trading days (used only when the daily bars carry iv)
    iv_change_days: list[int] = checked_list(lambda: [1, 5], ALL_POSITIVE)
    annualization_days: int = checked(252, POSITIVE)  # trading days per year for annualized vols (%)
    atr_minutes: int = checked(30, POSITIVE)  # minute ATR window (EWM span, minutes)
    volume_lookback_days: int = checked(20, POSITIVE)  # past sessions for the time-of-day volume norm
    stretch_k_atr: float = checked(2.0, POSITIVE)  # setup: close above session VWAP by this many ATRs
    stretch_volume_mult: float = checked(1.5, POSITIVE)  # setup: volume above its time-of-day norm x this
    pivot_lookback_minutes: int = checked(5, POSITIVE)  # setup: clock minutes from the top to a lower high


@dataclass
class LabelConfig:
    """Label definitions (docs/design.md section 1)."""

    horizon_days: int = checked(21, POSITIVE)  # h: yA spans days t+1..t+h
    horizon_minutes: int = checked(30, POSITIVE)  # H: yB spans minutes m+1..m+H of the same session
    k_down: float = checked(1.5, POSITIVE)  # downside barrier in ATR units
    k_up: float = checked(1.5, POSITIVE)  # upside barrier in ATR units
    annualization_days: int = checked(252, POSITIVE)


@dataclass
class WalkForwardConfig:
    """Walk-forward folds in trading days (daily rows); see lab_v10/src/dataset/folds.py."""

    scheme: Literal["expanding", "rolling"] = "expanding"
    # last: n_folds consecutive test blocks of test_days rows that end the sample (a quick look at the recent
    # past). whole_history: test blocks from the end of the warm-up (min_train_days, or train_days for rolling,
    # + val_days rows) to the last sample, each at most test_days rows and refit after each; n_folds is unused.
    mode: Literal["last", "whole_history"] = "last"
    n_folds: int = checked(4, POSITIVE)  # mode last: consecutive test blocks that end the sample
    min_train_days: int = checked(250, POSITIVE)  # rows in the first fold's training window, before purging
    train_days: int = checked(500, POSITIVE)  # rolling scheme only: training window rows (>= min_train_days)
    val_days: int = checked(60, POSITIVE)  # rows before each test block; must exceed the label horizon
    test_days: int = checked(120, POSITIVE)
    # rows after each test block that never train a model. In walk-forward every test block is scored by a
    # model trained on earlier rows only, so the embargo protects no score there (it only drops a few training
    # rows of later folds, from 3 folds on); it matters for CPCV, where training rows follow test groups.
    embargo_days: int = checked(5, NON_NEGATIVE)
    cpcv_groups: int = checked(6, POSITIVE)  # CPCV (sweep validation.scheme cpcv): contiguous sample groups
    cpcv_test_groups: int = checked(2, POSITIVE)  # groups scored per CPCV split; < cpcv_groups

    def cross_check(self) -> str | None:
        """``key: expected ...`` for a rule between fields that is broken, else None (run by load_config)."""
        if self.cpcv_test_groups >= self.cpcv_groups:
            return f"cpcv_test_groups: expected int < cpcv_groups ({self.cpcv_groups}), got {self.cpcv_test_groups}"
        return None


@dataclass
class ModuleConfig:
    """One transformer stack (H- or L-module): post-norm blocks, RoPE, SwiGLU, RMSNorm, no biases."""

    n_layers: int = checked(2, POSITIVE)
    d_model: int = checked(64, POSITIVE)  # n_heads x head width; the head width must be even (RoPE pairs)
    n_heads: int = checked(4, POSITIVE)
    ffn_dim: int = checked(96, POSITIVE)  # SwiGLU hidden width
    fused_qkv: bool = True  # one (d -> 3d) QKV projection or three (d -> d); same parameters either way


@dataclass
class HRMConfig:
    """HRM dual network (docs/design.md section 4). Widths change between presets, never the code path.

    "Good enough to halt" (lab_v10/src/options/act_halting.py): a segment's answer is correct when the
    Head-A Gaussian NLL of the standardized yA is at most ``halt_nll_threshold`` and the mean Head-B log
    loss over the day's labelled minutes is at most ``halt_bce_threshold``. The defaults are the expected
    scores of uninformed forecasts: N(0, 1) for a standardized target, and p = 1/2 for each minute.
    There is no L->H path: any flow from day d's minutes into H would let Head A (a forecast made at the
    close of day d-1) read day d, and let FiLM carry later minutes into earlier ones (docs/design.md 3 and 4).
    """

    h: ModuleConfig = field(default_factory=ModuleConfig)
    l: ModuleConfig = field(default_factory=lambda: ModuleConfig(n_layers=2, d_model=96, n_heads=4, ffn_dim=96))
    daily_features: int = checked(18, POSITIVE)  # F_d: 18 daily features with iv; set from the table at fit time
    minute_features: int = checked(10, POSITIVE)  # F_m: len(INTRADAY_MODEL_COLUMNS); set at fit time
    daily_window: int = checked(192, POSITIVE)  # H tokens: the daily rows ending at d-1
    # Head A learns yA / X_daily[gap_scale_column] at the forecast date (the gap in units of that day's implied vol,
    # a daily feature > 0) and scales its mu, sigma back to vol points; null: yA in vol points (hrm_adapter.py).
    gap_scale_column: str | None = "iv"
    minutes_per_day: int = checked(390, POSITIVE)  # L tokens: the day's minutes
    H_cycles: int = checked(2, POSITIVE)
    L_cycles: int = checked(2, POSITIVE)
    max_segments: int = checked(8, POSITIVE)
    halt_exploration_prob: float = checked(0.1, PROBABILITY)
    eval_halting: Literal["learned", "max"] = "learned"
    rope_base: float = checked(10000.0, POSITIVE)
    norm_eps: float = checked(1e-5, POSITIVE)
    halt_nll_threshold: float = 0.5 * (1.0 + math.log(2.0 * math.pi))  # nats, Head-A NLL (any real value)
    halt_bce_threshold: float = checked(math.log(2.0), POSITIVE)  # nats per labelled minute, Head-B log loss
    # FiLM H->L; false: the L-module runs unconditioned, so Head B never sees the daily context (an ablation)
    film: bool = True
    # pooled multi-symbol training: a learned (n_symbols, d_H) vector added to every daily token of the sample's
    # symbol before the H-module; n_symbols is set from the training symbols at fit time (like daily_features)
    # and must be >= 1 when the network is built with symbol_embedding true (hrm_net.HRMNet checks it)
    symbol_embedding: bool = False
    n_symbols: int = checked(0, NON_NEGATIVE)


@dataclass
class TrainConfig:
    """HRM trainer settings (lab_v10/src/options/hrm_train.py). The learning rate follows the batch count:
    linear warmup over ``warmup_steps`` batches to ``lr``, then cosine decay to 0 at the last batch of
    ``epochs``; every segment of a batch takes one optimizer step at that batch's rate."""

    lr: float = checked(1e-4, POSITIVE)  # peak AdamW learning rate
    weight_decay: float = checked(0.01, NON_NEGATIVE)  # decoupled; weight matrices only (not norms, biases)
    warmup_steps: int = checked(100, NON_NEGATIVE)  # batches of linear warmup
    batch_size: int = checked(32, POSITIVE)  # samples (days) per batch
    epochs: int = checked(20, POSITIVE)  # maximum passes over the training samples
    patience: int = checked(3, POSITIVE)  # epochs without a lower validation loss before stopping
    # joint: stop on head_a_nll + head_b_bce, keep one best network. per_head: stop when neither head's validation
    # loss improved for `patience` epochs; each head forecasts from the weights of its best epoch (hrm_train.py).
    early_stopping: Literal["joint", "per_head"] = "joint"
    grad_clip: float = checked(1.0, POSITIVE)  # max global L2 norm of the network gradient per step
    autocast_bf16: bool = True  # bf16 autocast (CPU and CUDA) with fp32 master weights
    loss_weighting: Literal["uncertainty", "gradnorm", "fixed"] = "uncertainty"  # Head A vs Head B
    gradnorm_alpha: float = checked(1.5, NON_NEGATIVE)  # GradNorm asymmetry alpha
    ponder_cost: float = checked(0.01, NON_NEGATIVE)  # halt probability one more segment must buy (Q targets)
    q_loss_weight: float = checked(0.5, NON_NEGATIVE)  # weight of the Q-halt + Q-continue losses (HRM: 0.5)
    skip_nonfinite: bool = False  # skip (and count) a batch with a non-finite loss or gradient, else raise
    deterministic: bool = False  # torch.use_deterministic_algorithms during fit (matters on CUDA)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # networks trained independently on the same samples, forecasts averaged (hrm_adapter.py); 1 = the paper's
    ensemble_size: int = checked(1, POSITIVE)
    # Warm start across walk-forward folds (HRMModel): fold k's networks (each ensemble member) start from fold
    # k-1's best weights and train warm_start_epochs epochs, each on warm_start_samples training samples drawn at
    # random from the fold's whole training set (null: all of them); fold 0 trains from scratch for `epochs`.
    # Scalers and the target's moments are refit on each fold's training rows: only weights carry over.
    warm_start: bool = False
    warm_start_epochs: int = checked(1, POSITIVE)
    warm_start_samples: int | None = checked(None, POSITIVE)
    # a pretrained HRM adapter file (scripts/pretrain_hrm.py): every fit that does not warm-start from an earlier
    # fold starts each ensemble member's network from it (symbol embedding excluded), then trains `epochs`
    init_from: str | None = None
    threads: int | None = checked(None, POSITIVE)  # torch CPU threads while the HRM fits and predicts (null: torch's)


@dataclass
class TSHRMConfig:
    """``--models tshrm``: the TimeSeriesHRM (lab_v10/src/models) as a Book A gap forecaster.

    A sample is a forecast date t: the ``window`` standardized daily feature rows ending at t (inclusive) ->
    a Gaussian (mu, sigma) of the standardized yA(t). Training: deep supervision with ACT (ts_train_step),
    AdamW, early stopping on the validation NLL. Device and seed are ``train.device`` and ``seed``.
    """

    window: int = checked(32, POSITIVE)  # T_in: daily rows per input window, ending at the forecast date
    patch_len: int = checked(4, POSITIVE)  # daily rows per H token; must divide window
    h: ModuleConfig = field(default_factory=lambda: ModuleConfig(n_layers=1, d_model=32, n_heads=2, ffn_dim=48))
    l: ModuleConfig = field(default_factory=lambda: ModuleConfig(n_layers=1, d_model=32, n_heads=2, ffn_dim=48))
    H_cycles: int = checked(2, POSITIVE)
    L_cycles: int = checked(1, POSITIVE)
    max_segments: int = checked(2, POSITIVE)
    lr: float = checked(1e-3, POSITIVE)  # AdamW learning rate
    weight_decay: float = checked(0.01, NON_NEGATIVE)
    batch_size: int = checked(32, POSITIVE)  # forecast dates per batch
    epochs: int = checked(20, POSITIVE)  # maximum passes over the training dates
    patience: int = checked(3, POSITIVE)  # epochs without a lower validation NLL before stopping
    grad_clip: float = checked(1.0, POSITIVE)  # max global L2 norm of the gradient per step


@dataclass
class BookAConfig:
    """Book A: ATM straddles on the forecast vol gap."""

    rate: float = 0.02  # continuously compounded risk-free rate, per year
    dividend_yield: float = 0.015  # continuous dividend yield, per year
    tenor_days: int = checked(30, POSITIVE)  # calendar days to expiry at entry
    holding_days: int = checked(5, POSITIVE)  # trading days held before exit (or expiry first)
    # sessions from the forecast close t to the entry close: 1 = next close with its spot and IV (tradable);
    # 0 = the signal's own close (optimistic: IV(t) is only known after that close)
    entry_lag_days: int = checked(1, NON_NEGATIVE)
    threshold: float = checked(0.5, NON_NEGATIVE)  # |mu/sigma| needed to trade
    size_cap: float = checked(1.0, POSITIVE)  # max |position| in units of capital-normalized straddles
    allow_overlap: bool = False
    shift_iv_for_tenor: bool = False  # price a tau-day option at IV30 * (tau / 30) ** iv_term_power
    iv_term_power: float = 0.05  # term-structure slope; > 0 means shorter tenors trade at lower IV
    bid_ask_base: float = checked(0.01, NON_NEGATIVE)  # half-spread as a fraction of premium
    bid_ask_iv_slope: float = checked(0.0005, NON_NEGATIVE)  # extra half-spread fraction per IV point
    commission_per_contract: float = checked(0.65, NON_NEGATIVE)  # currency per contract (100 multiplier)
    contract_multiplier: int = checked(100, POSITIVE)  # shares of underlying per option contract
    capital: float = checked(1_000_000.0, POSITIVE)  # book capital, currency; sizes -> contract counts
    delta_hedge: bool = False
    hedge_cost_bps: float = checked(1.0, NON_NEGATIVE)  # cost of hedge trades, bps of notional traded


@dataclass
class BookBConfig:
    """Book B: meta-labelled backside shorts."""

    proba_threshold: float = checked(0.55, PROBABILITY)
    spread_bps: float = checked(2.0, NON_NEGATIVE)  # full bid-ask spread, bps of price
    commission_per_share: float = checked(0.005, NON_NEGATIVE)
    borrow_fee_annual: float = checked(0.01, NON_NEGATIVE)  # fraction per year on short notional
    stop_buffer_atr: float = checked(0.1, NON_NEGATIVE)  # stop above the pivot high by this many ATRs
    target: Literal["vwap", "barrier"] = "vwap"
    barrier_k_atr: float = checked(1.5, POSITIVE)  # target="barrier": entry - this many ATRs (cf. labels.k_down)
    ssr: bool = True  # Reg SHO Rule 201 approximation
    luld: bool = True  # limit up / limit down bands
    luld_band: float = checked(0.05, POSITIVE)  # band as a fraction of the reference price
    capital_per_trade: float = checked(1.0, POSITIVE)  # P&L is per unit of capital
    capital: float = checked(1_000_000.0, POSITIVE)  # book capital, currency; notional -> share counts


@dataclass
class PortfolioConfig:
    method: Literal["fixed", "vol_target"] = "vol_target"
    weight_a: float = checked(0.5, NON_NEGATIVE)
    weight_b: float = checked(0.5, NON_NEGATIVE)
    target_vol: float = checked(0.10, POSITIVE)  # annualized
    vol_lookback_days: int = checked(63, POSITIVE)
    max_leverage: float = checked(3.0, POSITIVE)
    drawdown_guard: float = checked(0.2, OPEN_UNIT)  # cut exposure in half beyond this drawdown


@dataclass
class BaselineConfig:
    """Baseline models (lab_v10/src/baselines). Grids are searched on the validation rows of each fold."""

    lgbm_n_estimators: int = checked(200, POSITIVE)  # max boosting rounds (early stopping on validation)
    lgbm_learning_rate: float = checked(0.05, POSITIVE)
    lgbm_num_leaves: int = checked(15, POSITIVE)
    lgbm_min_child_samples: int = checked(20, POSITIVE)  # min training rows per leaf
    lgbm_early_stopping_rounds: int = checked(20, POSITIVE)  # rounds without validation improvement
    # ridge penalties tried by the linear Book A baseline (validation MSE picks one)
    ridge_alphas: list[float] = checked_list(lambda: [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0], ALL_POSITIVE)
    # inverse L2 strengths tried by the logistic Book B baseline (validation log loss picks one)
    logistic_cs: list[float] = checked_list(lambda: [0.001, 0.01, 0.1, 1.0, 10.0], ALL_POSITIVE)
    logistic_max_iter: int = checked(1000, POSITIVE)  # lbfgs iterations
    num_threads: int = checked(1, POSITIVE)  # LightGBM threads


@dataclass
class PanelConfig:
    """A universe run (``--universe``, or ``data.synthetic.n_symbols`` > 1; lab_v10/src/dataset/panel.py)."""

    # models also fitted pooled across symbols, reported as <name>_pooled (hrm, har, linear, lgbm)
    pooled_models: list[str] = field(default_factory=lambda: ["hrm", "har", "linear", "lgbm"])
    # a symbol takes part in a fold once it has this many training dates (it joins when its history allows)
    min_train_days: int = checked(250, POSITIVE)


@dataclass
class TrackingConfig:
    """MLflow run tracking (lab_v10/src/eval/tracking.py; README "Tracking"). ``main_v3.py --tracking-uri`` wins
    over ``uri``, which wins over the ``MLFLOW_TRACKING_URI`` variable; none of them: nothing is tracked."""

    uri: str | None = None  # e.g. sqlite:///mlflow.db, ./mlruns (a folder), http://host:5000
    experiment: str = checked("lab", (lambda v: v.strip() != "", "non-empty"))  # MLflow experiment name


@dataclass
class StreamConfig:
    """Live per-minute Head-B streaming (lab_v10/src/options/hrm_stream.py, stream_dtype.py; HRM27M.md,
    "Latency and throughput"). A day's halting is fixed before the open, so capped symbols are known then."""

    # weights and KV cache of the streamer: fp32, bf16, or auto (a short probe of the streaming shapes picks bf16
    # only where it runs them faster than fp32, and logs why)
    dtype: Literal["auto", "fp32", "bf16"] = "auto"
    # the cached-attention kernel: sdpa, matmul, compiled (torch.compile'd one-minute block update; needs a C++
    # compiler on CPU, Triton on CUDA), or auto (measured: in that order, a kernel replaces the choice so far only
    # when 1.1x faster)
    attention: Literal["auto", "sdpa", "matmul", "compiled"] = "auto"
    # most segments a symbol runs per minute in live use (null: hrm.max_segments); symbols the learned rule would
    # run longer stop there (the full forward with hrm.max_segments = this value), counted per day
    max_segments_live: int | None = checked(None, POSITIVE)


@dataclass
class LabConfig:
    """The whole lab configuration."""

    seed: int = checked(0, SEED)  # every random draw (data, initialisation, batch order) derives from it
    models: list[str] = field(default_factory=lambda: ["hrm", "har", "linear", "lgbm", "logistic", "rule"])
    data: DataConfig = field(default_factory=DataConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    labels: LabelConfig = field(default_factory=LabelConfig)
    walkforward: WalkForwardConfig = field(default_factory=WalkForwardConfig)
    hrm: HRMConfig = field(default_factory=HRMConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tshrm: TSHRMConfig = field(default_factory=TSHRMConfig)
    book_a: BookAConfig = field(default_factory=BookAConfig)
    book_b: BookBConfig = field(default_factory=BookBConfig)
    portfolio: PortfolioConfig = field(default_factory=PortfolioConfig)
    baselines: BaselineConfig = field(default_factory=BaselineConfig)
    panel: PanelConfig = field(default_factory=PanelConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)


def config_from_dict(data: dict, source: str = "<dict>", cls: type = LabConfig) -> Any:
    """Build a config dataclass from a plain mapping; errors are prefixed with ``source``."""
    return build_config(data, source, cls)


def load_config(path: str | Path, cls: type = LabConfig) -> Any:
    """Load ``path`` (YAML) into ``cls`` with strict validation."""
    return build_config(read_yaml(path), str(path), cls)
