"""The first arrow of the data flow: a data source -> validated bars (docs/design.md section 2).

:func:`load_market` turns ``DataConfig`` into a :class:`Market` — daily bars (with ``iv`` when the source has
it), minute bars when the source has them, the synthetic oracle when the source is synthetic — plus a plain
description of what was loaded for the report. Nothing downstream reads raw files.

Real sources (files, arch) pass the plausibility checks of ``DataConfig`` (data/README.md, "Plausibility
checks"); the repairs made and oddities tolerated land in ``description["data_checks"]``. Synthetic data is
not checked here: it is valid by construction and dated on business days, not an exchange calendar
(tests/test_data_checks.py shows that it passes the value and clock checks).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from lab_v10.src.config import DataConfig
from lab_v10.src.data.loaders import (
    attach_iv,
    load_arch_spx_vix,
    load_daily,
    load_iv,
    load_minutes,
)
from lab_v10.src.data.oracle import Oracle
from lab_v10.src.data.plausibility import CheckOptions, CheckReport, check_iv_level
from lab_v10.src.data.schema import DailyBars, MinuteBars
from lab_v10.src.data.session_checks import check_common_dates, check_minute_prices
from lab_v10.src.data.sessions import minute_coverage
from lab_v10.src.data.synthetic import generate_market_from_config
from lab_v10.src.errors import ConfigError

log = logging.getLogger("lab.data")


@dataclass(frozen=True)
class Market:
    """Validated inputs of one run. ``minutes`` is None for daily-only sources; ``oracle`` only for synthetic."""

    daily: DailyBars
    minutes: MinuteBars | None
    oracle: Oracle | None
    description: dict = field(default_factory=dict)


def daily_from_minutes(minutes: MinuteBars) -> DailyBars:
    """Session OHLCV aggregated from regular-session minutes (open = first open, close = last close)."""
    frame = minutes.frame
    session = pd.DatetimeIndex(minutes.session_labels(), name="date")
    grouped = frame.groupby(session, sort=True)
    daily = pd.DataFrame(
        {
            "open": grouped["open"].first(),
            "high": grouped["high"].max(),
            "low": grouped["low"].min(),
            "close": grouped["close"].last(),
            "volume": grouped["volume"].sum(),
        }
    )
    return DailyBars(daily, source=f"{minutes.source} (daily aggregate of regular-session minutes)")


def describe_market(daily: DailyBars, minutes: MinuteBars | None, source: str, calendar: str | None) -> dict:
    """What was loaded, for the report: source, rows and date range, iv, minute sessions and coverage."""
    out = {
        "source": source,
        "daily_rows": len(daily),
        "daily_first": str(daily.dates[0].date()),
        "daily_last": str(daily.dates[-1].date()),
        "has_iv": daily.has_iv,
    }
    if minutes is not None:
        out.update(minute_rows=len(minutes), sessions=len(minutes.session_dates), minute_tz=str(minutes.tz))
        if calendar is not None:
            coverage = minute_coverage(minutes, calendar)
            out.update(missing_minutes=int(coverage.missing_total), minute_coverage=coverage.summary())
    return out


def load_market(cfg: DataConfig, seed: int) -> Market:
    """Load the market of ``cfg.source`` (synthetic, arch or files); errors name the file and the problem."""
    if cfg.source == "synthetic":
        daily, minutes, oracle = generate_market_from_config(cfg.synthetic, seed)
        return Market(daily, minutes, oracle, describe_market(daily, minutes, f"synthetic (seed {seed})", None))
    checks, report = CheckOptions.from_config(cfg), CheckReport()
    if cfg.source == "universe":
        raise ConfigError("data.source 'universe' holds many markets: load it with data.universe.load_universe")
    if cfg.source == "arch":
        daily = load_arch_spx_vix(checks, report)
        check_iv_level(daily, "arch.data.vix", checks, report)
        description = describe_market(daily, None, "arch: S&P 500 daily + VIX (arch.data)", None)
        return Market(daily, None, None, {**description, "data_checks": report.as_dict()})
    if cfg.daily is None and cfg.minutes is None:
        raise ConfigError("data.source is 'files' but neither data.daily (--daily) nor data.minutes (--minutes) is set")
    if cfg.iv is not None and cfg.daily is None:
        raise ConfigError("data.iv (--iv) needs data.daily (--daily): implied vol is joined onto daily bars")
    minutes = None
    if cfg.minutes is not None:
        minutes = load_minutes(cfg.minutes, tz=cfg.tz, source_tz=cfg.minutes_source_tz, calendar=cfg.calendar,
                               fill_missing=cfg.fill_missing_minutes, checks=checks, report=report)
    if cfg.daily is not None:
        daily = _load_daily_with_iv(cfg, checks, report)
        if minutes is not None:
            check_common_dates(daily.dates, daily.source, minutes.session_dates, minutes.source)
            frame = check_minute_prices(daily.frame, daily.source, minutes.frame, minutes.source,
                                        cfg.minutes_vs_daily == "rescale", report)
            minutes = MinuteBars(frame, source=minutes.source)
    else:
        daily = daily_from_minutes(minutes)
        log.info("no daily file given: %d daily bars aggregated from the minute bars (no iv: Book A cannot run)",
                 len(daily))
    names = ", ".join(str(p) for p in (cfg.daily, cfg.iv, cfg.minutes) if p is not None)
    description = describe_market(daily, minutes, f"files: {names}", cfg.calendar)
    return Market(daily, minutes, None, {**description, "data_checks": report.as_dict()})


def _load_daily_with_iv(cfg: DataConfig, checks: CheckOptions, report: CheckReport) -> DailyBars:
    """The daily file with the IV file joined (when given), both checked; the IV level is checked against
    the realised vol of the closes. Daily rows whose IV was dropped as a bad print go with it (reported)."""
    daily = load_daily(cfg.daily, checks, report)
    if cfg.iv is not None:
        iv = load_iv(cfg.iv, checks, report)
        bad_days = report.dropped.get(str(Path(cfg.iv)), pd.DatetimeIndex([]))
        gone = daily.dates.isin(bad_days)
        if gone.any():
            report.repaired(daily.source, f"dropped daily rows whose IV in {cfg.iv} was a bad print",
                            "--drop-bad-prints", [str(d.date()) for d in daily.dates[gone]])
            daily = DailyBars(daily.frame.loc[~gone], source=daily.source)
        daily = attach_iv(daily, iv, source=str(cfg.iv), drop_days_without_iv=cfg.iv_missing == "drop", report=report)
    if daily.has_iv:
        check_iv_level(daily, str(cfg.iv or cfg.daily), checks, report)
    return daily
