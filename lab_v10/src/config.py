"""Typed lab configuration loaded from YAML.

One dataclass per section, each field's range check beside its default (:func:`checked`). :func:`load_config`
reads a YAML file (:func:`read_yaml`: UTF-8, no repeated key, dates as text) into a :class:`LabConfig`, rejecting
unknown keys, wrong types, non-finite floats and out-of-range values with a ConfigError naming file and key::

    config/small.yaml: hrm.l.d_model: expected int > 0, got '768x'

Units and time semantics are stated in each field's comment.
"""
from __future__ import annotations

import calendar
import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Union

import yaml

from lab_v10.src.errors import ConfigError

# ----------------------------------------------------------------------------------------------
# Range checks: (predicate, human description). The description completes "expected <type> ...".
Check = tuple[Callable[[Any], bool], str]

POSITIVE: Check = (lambda v: v > 0, "> 0")
NON_NEGATIVE: Check = (lambda v: v >= 0, ">= 0")
PROBABILITY: Check = (lambda v: 0.0 <= v <= 1.0, "in [0, 1]")
OPEN_UNIT: Check = (lambda v: 0.0 < v < 1.0, "in (0, 1)")
ALL_POSITIVE: Check = (lambda v: len(v) > 0 and all(x > 0 for x in v), "non-empty, all > 0")
SEED: Check = (lambda v: 0 <= v < 2**32, "in [0, 2**32) (it seeds torch.manual_seed and numpy)")
SESSION_DATE: Check = (  # years 1900..2199: pandas' dates end in 2262
    lambda v: (m := re.fullmatch(r"(19\d\d|20\d\d|21\d\d)-(0[1-9]|1[0-2])-(\d\d)", v)) is not None
    and 1 <= int(m[3]) <= calendar.monthrange(int(m[1]), int(m[2]))[1], "YYYY-MM-DD in 1900..2199")

YAML11_EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")  # 1e-3, 5E4: numbers YAML 1.1 leaves as text


def checked(default: Any, check: Check) -> Any:
    """A dataclass field with a default and a range check, applied by load_config and validate_config."""
    return field(default=default, metadata={"check": check})


def checked_list(default_factory: Callable[[], Any], check: Check | None = None) -> Any:
    return field(default_factory=default_factory, metadata={"check": check} if check else {})


@dataclass
class SyntheticConfig:
    """Synthetic market generator settings (see data/README.md for the generating process)."""

    n_days: int = checked(1000, POSITIVE)  # trading days generated
    minutes_per_day: int = checked(390, (lambda v: 1 <= v <= 390, "in 1..390 (XNYS session)"))
    start: str = checked("2015-01-02", SESSION_DATE)  # first session date (business days follow)
    initial_price: float = checked(100.0, POSITIVE)


@dataclass
class DataConfig:
    """Where market data comes from.

    ``source``: ``synthetic`` (embedded generator, default), ``arch`` (real S&P 500 + VIX shipped in the
    ``arch`` package, daily only) or ``files`` (``daily``/``iv``/``minutes`` paths).
    """

    source: Literal["synthetic", "arch", "files"] = "synthetic"
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
    n_folds: int = checked(4, POSITIVE)  # consecutive test blocks that end the sample
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


def _type_name(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is list:
        return f"list of {_type_name(args[0])}"
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Convert a YAML value to ``tp`` or raise ConfigError naming ``where``."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of {tp.__name__} keys, got {value!r}")
        return _build(tp, value, where)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(value, arg, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
        return [_convert(v, typing.get_args(tp)[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if tp in (bool, int, str):
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            raise ConfigError(f"{where}: expected {'bool (true/false)' if tp is bool else tp.__name__}, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and YAML11_EXPONENT.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads 1e-3 (no dot) as text; it means the number here
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected float, got {value!r}")
        return float(value) if isinstance(value, float) or abs(value) < 2**1024 else math.inf  # huge int: inf, rejected
    raise ConfigError(f"{where}: unsupported config type {tp!r}")  # a programming error in this module


def _check_range(f: dataclasses.Field, value: Any, tp: Any, where: str) -> None:
    if any(isinstance(v, float) and not math.isfinite(v) for v in (value if isinstance(value, list) else [value])):
        raise ConfigError(f"{where}: expected {'finite numbers' if isinstance(value, list) else 'a finite number'}, "
                          f"got {value!r}")  # .inf, .nan, 1e999
    check: Check | None = f.metadata.get("check")
    if check is not None and value is not None and not check[0](value):
        raise ConfigError(f"{where}: expected {_type_name(tp)} {check[1]}, got {value!r}")


def _build(cls: type, data: dict, where: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    prefix = f"{where}." if where and not where.endswith(": ") else where
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key (expected one of: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, value in data.items():
        key_where = f"{prefix}{name}"
        try:
            converted = _convert(value, hints[name], key_where)
        except ConfigError:
            check = fields[name].metadata.get("check")
            if check is None:
                raise
            raise ConfigError(f"{key_where}: expected {_type_name(hints[name])} {check[1]}, got {value!r}") from None
        _check_range(fields[name], converted, hints[name], key_where)
        kwargs[name] = converted
    built = cls(**kwargs)
    problem = built.cross_check() if hasattr(built, "cross_check") else None
    if problem:
        raise ConfigError(f"{prefix}{problem}")
    return built


def config_from_dict(data: dict, source: str = "<dict>", cls: type = LabConfig) -> Any:
    """Build a config dataclass from a plain mapping; errors are prefixed with ``source``."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    return _build(cls, data, f"{source}: ")


class StrictLoader(yaml.SafeLoader):
    """SafeLoader rejecting a key repeated in a mapping (PyYAML keeps the last, silently) and reading dates as text."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        lines: dict[str, int] = {}  # key text -> line of its first occurrence
        for key, _ in node.value:
            if key.tag != "tag:yaml.org,2002:merge" and str(key.value) in lines:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key.value!r} repeated (first on line {lines[str(key.value)]})", key.start_mark)
            lines[str(key.value)] = key.start_mark.line + 1
        return super().construct_mapping(node, deep)


StrictLoader.yaml_implicit_resolvers = {c: [(tag, rx) for tag, rx in rs if tag != "tag:yaml.org,2002:timestamp"]
                                        for c, rs in yaml.SafeLoader.yaml_implicit_resolvers.items()}  # no dates


def read_yaml(path: str | Path, what: str = "config") -> Any:
    """The YAML document in ``path`` read with :class:`StrictLoader`; one-line ConfigError naming the file (and
    line and column) when it is missing, unreadable, not UTF-8 text or not valid YAML (a repeated key too)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {what} file not found")
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:  # a binary file, or one this user cannot read
        raise ConfigError(f"{path}: expected a readable UTF-8 text {what} file ({exc})") from None
    try:
        return yaml.load(text, Loader=StrictLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)  # a ReaderError (a control character) has a position instead
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else f"character {exc.position}"
        problem = getattr(exc, "problem", None) or exc.reason
        raise ConfigError(f"{path}: not valid YAML at {where}: {problem}") from None


def load_config(path: str | Path, cls: type = LabConfig) -> Any:
    """Load ``path`` (YAML) into ``cls`` with strict validation."""
    return config_from_dict(read_yaml(path), str(path), cls)


def config_to_dict(cfg: Any) -> dict:
    """Plain-dict view of a config dataclass (for summary.json and checkpoints)."""
    return dataclasses.asdict(cfg)


def validate_config(cfg: Any, source: str = "<config>") -> Any:
    """Re-check a config built in code (e.g. by ``dataclasses.replace``) with the same rules as loading."""
    return config_from_dict(config_to_dict(cfg), source, type(cfg))


def apply_overrides(cfg: Any, overrides: dict[str, Any] | list[str], source: str = "--set") -> Any:
    """``cfg`` with dotted keys set (``section.key``), validated like a YAML file; errors name ``source``.

    ``overrides``: a mapping ``{"train.epochs": 2}`` (typed values, e.g. an Optuna trial's) or ``"KEY=VALUE"``
    strings (``--set``: each value read like a config file's, so ``2``, ``0.5``, ``true``, ``null``, ``[1, 2]``).
    """
    if isinstance(overrides, dict):
        pairs = list(overrides.items())
    else:
        pairs = []
        for item in overrides:
            key, sep, raw = item.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"{source} {item!r}: expected KEY=VALUE, e.g. train.epochs=8")
            try:
                value = yaml.load(raw, Loader=StrictLoader)
            except yaml.YAMLError:
                raise ConfigError(f"{source} {key}: value {raw!r} is not a YAML scalar or list") from None
            pairs.append((key.strip(), value))
    data = config_to_dict(cfg)
    for key, value in pairs:
        node, parts = data, key.split(".")
        for depth, part in enumerate(parts[:-1]):
            if not isinstance(node.get(part), dict):
                where = ".".join(parts[: depth + 1])
                raise ConfigError(f"{source} {key}: {where!r} is not a config section")
            node = node[part]
        if parts[-1] not in node:
            raise ConfigError(f"{source} {key}: unknown key {parts[-1]!r} (expected one of: {', '.join(sorted(node))})")
        node[parts[-1]] = value
    return config_from_dict(data, source, type(cfg))
