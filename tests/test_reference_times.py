"""An independent reference for the ``id`` and ``time`` columns: pandas' own time arithmetic.

Nothing here imports or repeats the package's reading of times: the expected ``time`` of each
image is computed with pandas alone (``Timestamp.tz_convert``, ``Period.start_time``,
``Timestamp(year, ..., tz="UTC")`` from a cftime date's fields, and floor division of the
distance from the epoch by one millisecond), the expected ``id`` from the coordinate's values
as strings (or ``'0'``, ``'1'``, ...). The package's ``getRegion`` (integer milliseconds),
``get_region`` (a timezone-aware UTC column), lazy tables and written files are then compared
with it over Hypothesis strategies of time coordinates: naive ``datetime64`` of several units,
timezone-aware times in several zones (as pandas indexes, object arrays and mixed zones),
``PeriodIndex`` of several frequencies, cftime calendars, ``system:time_start`` coordinates,
times before 1970 and after 2038, duplicates and sub-millisecond parts.

Sub-millisecond parts: Earth Engine's times are integer milliseconds, so a finer instant must
be rounded one way. The reference takes the **floor** (toward negative infinity): the
millisecond that contains the instant. Truncation toward zero would move instants before 1970
forward and after 1970 backward, so two images 0.2 ms apart on either side of the epoch would
be 1 ms apart in one direction and 0 in the other; the floor keeps the order of instants and
agrees with ``filterDate``'s ``[start, end)`` on whole milliseconds.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import cftime
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import assume, given
from hypothesis import strategies as st

import xr_getregion
from xr_getregion import CubeError, get_region, getRegion

EPOCH = pd.Timestamp("1970-01-01", tz="UTC").as_unit("ms")
ONE_MS = pd.Timedelta(1, "ms").as_unit("ms")
ZONES = ["UTC", "America/Chicago", "Asia/Kolkata", "Pacific/Chatham"]
UNITS = ["D", "s", "ms", "us", "ns"]
CALENDARS = [
    "standard",
    "proleptic_gregorian",
    "noleap",
    "365_day",
    "all_leap",
    "366_day",
    "julian",
    "360_day",
]
# A one-pixel point in the 2 x 2 cube below (lat/lon dims: EPSG:4326, 1-degree pixels).
POINT = {"type": "Point", "coordinates": [10.5, 1.5]}


def floor_ms(stamp: pd.Timestamp) -> int:
    """Milliseconds since the epoch of a timezone-aware instant, floored (see the docstring)."""
    return int((stamp.tz_convert("UTC") - EPOCH) // ONE_MS)


def utc(stamp: pd.Timestamp) -> pd.Timestamp:
    """A naive pandas time read as UTC (Earth Engine's convention), an aware one converted."""
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


@dataclass
class Case:
    """A cube's image coordinates and the table columns pandas says they give."""

    coords: dict[str, Any]
    n: int
    expected_ms: list[int | None] | None = None  # None: a CubeError is expected
    error: str = ""  # a regex the CubeError's message must match
    ids: list[str] = field(default_factory=list)
    dim: str = "time"


def make(case: Case) -> xr.DataArray:
    values = np.arange(case.n * 4, dtype="float32").reshape(case.n, 2, 2)
    cube = xr.DataArray(
        values,
        dims=(case.dim, "lat", "lon"),
        coords={"lat": [1.5, 0.5], "lon": [10.5, 11.5]},
        name="b",
    )
    return cube.assign_coords(case.coords)


def expected_times(case: Case) -> list[Any]:
    assert case.expected_ms is not None
    return [pd.NaT if m is None else EPOCH + m * ONE_MS for m in case.expected_ms]


def check(case: Case) -> None:
    """``getRegion`` and ``get_region`` give the reference's ids and times, or a CubeError."""
    cube = make(case)
    ids = case.ids or [str(i) for i in range(case.n)]
    if case.expected_ms is None:
        with pytest.raises(CubeError, match=case.error):
            getRegion(cube, POINT, crs="native")
        with pytest.raises(CubeError, match=case.error):
            get_region(cube, POINT)
        return
    with warnings.catch_warnings():
        # No calendar (or any other) warning may come out of reading the times.
        warnings.simplefilter("error")
        rows = getRegion(cube, POINT, crs="native")
        frame = get_region(cube, POINT)
    assert [r[0] for r in rows[1:]] == ids
    assert [r[3] for r in rows[1:]] == case.expected_ms
    assert all(r[3] is None or type(r[3]) is int for r in rows[1:])
    assert list(frame["id"].astype(str)) == ids
    assert isinstance(frame["time"].dtype, pd.DatetimeTZDtype)
    assert str(frame["time"].dt.tz) == "UTC"
    got = frame["time"].tolist()
    for g, e in zip(got, expected_times(case), strict=True):
        assert (pd.isna(g) and pd.isna(e)) or g == e, (got, expected_times(case))


# --- strategies ---------------------------------------------------------------------------

# Instants within pandas' nanosecond range, biased to the edges that matter: around the epoch
# (sub-millisecond, negative), before 1970, after 2038 (2**31 seconds).
NS_LO = pd.Timestamp("1700-01-01").value
NS_HI = pd.Timestamp("2250-01-01").value
instants_ns = st.one_of(
    st.integers(NS_LO, NS_HI),
    st.integers(-5_000_000, 5_000_000),  # within 5 ms of the epoch, either side
    st.integers(2**31 * 10**9 - 10**12, 2**31 * 10**9 + 10**12),
    st.sampled_from([NS_LO, -1, 0, 1, 999_999, 1_000_000, -999_999, -1_000_001]),
)


@st.composite
def instant_lists(draw: Any, min_size: int = 1) -> list[int]:
    """Instants (ns since the epoch), with duplicates drawn on purpose."""
    pool = draw(st.lists(instants_ns, min_size=1, max_size=4))
    return draw(st.lists(st.sampled_from(pool), min_size=min_size, max_size=5))


@st.composite
def id_coords(draw: Any, n: int) -> tuple[dict[str, Any], list[str]]:
    kind = draw(st.sampled_from(["none", "id", "system:index"]))
    if kind == "none":
        return {}, []
    labels = draw(st.lists(st.sampled_from(["a", "b", "S2A_1", "0"]), min_size=n, max_size=n))
    return {kind: ("time", labels)}, [str(v) for v in labels]


@st.composite
def naive_cases(draw: Any) -> Case:
    ns = draw(instant_lists())
    unit = draw(st.sampled_from(UNITS))
    values = np.array(ns, dtype="datetime64[ns]").astype(f"datetime64[{unit}]")
    if draw(st.booleans()):
        values[draw(st.integers(0, len(values) - 1))] = np.datetime64("NaT")
    expected = [None if pd.isna(v) else floor_ms(utc(pd.Timestamp(v))) for v in values]
    ids, labels = draw(id_coords(len(ns)))
    return Case({"time": values, **ids}, len(ns), expected, ids=labels)


@st.composite
def aware_cases(draw: Any) -> Case:
    ns = draw(instant_lists())
    zone = draw(st.sampled_from(ZONES))
    unit = draw(st.sampled_from(["s", "ms", "us", "ns"]))
    # Coarser units are floored in UTC: a floor in local time can land in a DST gap.
    index = pd.DatetimeIndex(ns, tz="UTC").floor(unit).as_unit(unit).tz_convert(zone)
    form = draw(st.sampled_from(["index", "object", "mixed zones", "other dim"]))
    stamps = list(index)
    if form == "mixed zones":
        stamps = [s.tz_convert(draw(st.sampled_from(ZONES))) for s in stamps]
    expected = [floor_ms(s) for s in stamps]
    ids, labels = draw(id_coords(len(ns)))
    if form == "index":
        coords: dict[str, Any] = {"time": index}
    elif form == "other dim":  # images along 't', the aware times a coordinate on it
        ids = {k: ("t", v[1]) for k, v in ids.items()}
        return Case(
            {"t": np.arange(len(ns)), "time": ("t", index), **ids},
            len(ns),
            expected,
            ids=labels,
            dim="t",
        )
    else:
        coords = {"time": ("time", np.array(stamps, dtype=object))}
    return Case({**coords, **ids}, len(ns), expected, ids=labels)


PERIOD_FREQS = ["Y", "Q", "M", "W", "D", "h", "min", "s", "ms"]


@st.composite
def period_cases(draw: Any) -> Case:
    ns = draw(instant_lists())
    freq = draw(st.sampled_from(PERIOD_FREQS))
    periods = pd.PeriodIndex([pd.Timestamp(v).to_period(freq) for v in ns], freq=freq)
    expected = [floor_ms(utc(p.start_time)) for p in periods]
    ids, labels = draw(id_coords(len(ns)))
    return Case({"time": periods, **ids}, len(ns), expected, ids=labels)


@st.composite
def cftime_dates(draw: Any, calendar: str) -> cftime.datetime:
    year = draw(st.one_of(st.integers(1, 9999), st.integers(1890, 2400)))
    month = draw(st.integers(1, 12))
    day = draw(st.one_of(st.integers(1, 31), st.integers(28, 31)))
    hms = draw(st.tuples(st.integers(0, 23), st.integers(0, 59), st.integers(0, 59)))
    micro = draw(st.sampled_from([0, 1, 999, 1000, 999_999]))
    try:
        return cftime.datetime(year, month, day, *hms, micro, calendar=calendar)
    except ValueError:  # no such date in this calendar (31 April, 30 Feb outside 360_day)
        assume(False)
        raise


@st.composite
def cftime_cases(draw: Any) -> Case:
    calendar = draw(st.sampled_from(CALENDARS))
    pool = draw(st.lists(cftime_dates(calendar), min_size=1, max_size=3))
    dates = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=4))
    ids, labels = draw(id_coords(len(dates)))
    coords = {"time": np.array(dates, dtype=object), **ids}
    expected: list[int | None] = []
    for d in dates:
        try:
            stamp = pd.Timestamp(
                d.year, d.month, d.day, d.hour, d.minute, d.second, d.microsecond, tz="UTC"
            )
        except ValueError:  # the date does not exist in the real calendar
            fields = f"{d.year:04d}-{d.month:02d}-{d.day:02d}"
            return Case(coords, len(dates), None, error=rf"(?s){fields}.*convert_calendar")
        expected.append(floor_ms(stamp))
    return Case(coords, len(dates), expected, ids=labels)


@st.composite
def time_start_cases(draw: Any) -> Case:
    """A ``system:time_start`` coordinate, which wins over the ``time`` coordinate."""
    n = draw(st.integers(1, 4))
    kind = draw(st.sampled_from(["int", "float", "float nan", "datetime64", "aware", "bad"]))
    ms = draw(st.lists(st.integers(-(2**53), 2**53), min_size=n, max_size=n))
    time = {"time": pd.date_range("2000-01-01", periods=n, freq="D")}
    if kind == "int":
        return Case({**time, "system:time_start": ("time", np.array(ms))}, n, ms)
    if kind in ("float", "float nan"):
        values = np.array(ms, dtype=float)
        expected: list[int | None] = [int(v) for v in values]  # floats of whole milliseconds
        if kind == "float nan":
            values[0], expected[0] = np.nan, None  # a missing time, as an EE image can have
        return Case({**time, "system:time_start": ("time", values)}, n, expected)
    if kind in ("datetime64", "aware"):
        ns = draw(st.lists(instants_ns, min_size=n, max_size=n))
        index = pd.DatetimeIndex(ns, tz="UTC").tz_convert(draw(st.sampled_from(ZONES)))
        # Naive datetime64 values hold the UTC wall time; aware ones their own zone's.
        values = index.tz_convert(None).values if kind == "datetime64" else index
        return Case(
            {**time, "system:time_start": ("time", values)}, n, [floor_ms(s) for s in index]
        )
    bad = draw(st.sampled_from([np.inf, -np.inf, 0.5, 1.5e300, 1594303347.25]))
    values = np.array(ms, dtype=float)
    values[-1] = bad
    text = "inf" if np.isinf(bad) else re.escape(repr(float(bad)))
    return Case(
        {**time, "system:time_start": ("time", values)},
        n,
        None,
        error=rf"(?s)system:time_start.*{text}",
    )


# --- the comparisons ----------------------------------------------------------------------


@given(naive_cases())
def test_naive_datetime64_of_every_unit(case: Case) -> None:
    check(case)


@given(aware_cases())
def test_timezone_aware_times_are_their_utc_instants(case: Case) -> None:
    check(case)


@given(period_cases())
def test_periods_are_their_start_instants(case: Case) -> None:
    check(case)


@given(cftime_cases())
def test_cftime_calendars_map_fields_or_refuse(case: Case) -> None:
    check(case)


@given(time_start_cases())
def test_system_time_start_coordinates(case: Case) -> None:
    check(case)


# A fixed catalogue of the same kinds, one case each: counted before and after the fix.
CATALOGUE = {
    "datetime64[ns] sub-ms before 1970": Case(
        {"time": np.array([-1, -999_999, 1_500_000], dtype="datetime64[ns]")}, 3, [-1, -1, 1]
    ),
    "datetime64[D] after 2038": Case(
        {"time": np.array(["2040-02-29", "1969-12-31"], dtype="datetime64[D]")},
        2,
        [floor_ms(pd.Timestamp("2040-02-29", tz="UTC")), -86_400_000],
    ),
    "datetime64[s]": Case(
        {"time": np.array(["1901-12-13T20:45:52"], dtype="datetime64[s]")},
        1,
        [floor_ms(pd.Timestamp("1901-12-13T20:45:52", tz="UTC"))],
    ),
    **{
        f"aware {zone}": Case(
            {
                "time": pd.DatetimeIndex(
                    ["2020-03-08 01:59:59.9999", "2020-11-01 01:30"], tz="UTC"
                ).tz_convert(zone)
            },
            2,
            [
                floor_ms(pd.Timestamp("2020-03-08 01:59:59.9999", tz="UTC")),
                floor_ms(pd.Timestamp("2020-11-01 01:30", tz="UTC")),
            ],
        )
        for zone in ZONES
    },
    "aware object array, mixed zones": Case(
        {
            "time": (
                "time",
                np.array(
                    [
                        pd.Timestamp("2020-07-09 12:00", tz="Asia/Kolkata"),
                        pd.Timestamp("1960-01-01", tz="Pacific/Chatham"),
                    ],
                    dtype=object,
                ),
            )
        },
        2,
        [
            floor_ms(pd.Timestamp("2020-07-09 06:30", tz="UTC")),
            floor_ms(pd.Timestamp("1960-01-01", tz="Pacific/Chatham")),
        ],
    ),
    "period M": Case(
        {"time": pd.period_range("1969-11", periods=3, freq="M")},
        3,
        [floor_ms(pd.Timestamp(s, tz="UTC")) for s in ("1969-11-01", "1969-12-01", "1970-01-01")],
    ),
    "period W": Case(
        {"time": pd.period_range("2020-01-01", periods=1, freq="W")},
        1,
        [floor_ms(pd.Timestamp("2019-12-30", tz="UTC"))],
    ),
    "cftime noleap 2300": Case(
        {
            "time": np.array(
                [cftime.datetime(2300, 12, 31, 23, 59, 59, 999_999, calendar="noleap")],
                dtype=object,
            )
        },
        1,
        [floor_ms(pd.Timestamp(2300, 12, 31, 23, 59, 59, 999_999, tz="UTC"))],
    ),
    "cftime 360_day 2001-02-30": Case(
        {"time": np.array([cftime.datetime(2001, 2, 30, calendar="360_day")], dtype=object)},
        1,
        None,
        error=r"(?s)2001-02-30.*cube.convert_calendar\(\"standard\", align_on=\"date\"\)",
    ),
    "cftime julian 1900-02-29": Case(
        {"time": np.array([cftime.datetime(1900, 2, 29, calendar="julian")], dtype=object)},
        1,
        None,
        error=r"(?s)1900-02-29.*convert_calendar",
    ),
    "system:time_start float": Case(
        {"system:time_start": ("time", np.array([1594303347000.0, np.nan]))},
        2,
        [1594303347000, None],
    ),
    "system:time_start aware": Case(
        {"system:time_start": ("time", pd.DatetimeIndex(["2020-07-09"], tz="America/Chicago"))},
        1,
        [floor_ms(pd.Timestamp("2020-07-09 05:00", tz="UTC"))],
    ),
    "system:time_start inf": Case(
        {"system:time_start": ("time", np.array([0.0, np.inf]))},
        2,
        None,
        error=r"(?s)system:time_start.*inf",
    ),
}


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_catalogue(name: str) -> None:
    check(CATALOGUE[name])


@pytest.mark.parametrize(
    "name",
    [
        "aware America/Chicago",
        "period M",
        "cftime noleap 2300",
        "datetime64[ns] sub-ms before 1970",
    ],
)
def test_lazy_tables_and_files_carry_the_same_times(name: str, tmp_path: Any) -> None:
    case = CATALOGUE[name]
    cube = make(case).chunk({"time": 1})
    expected = expected_times(case)
    lazy = get_region(cube, POINT, lazy=True).compute()
    assert lazy["time"].tolist() == expected
    path = tmp_path / "t.parquet"
    xr_getregion.to_parquet(cube, POINT, path)
    written = pd.read_parquet(path)
    assert str(written["time"].dt.tz) == "UTC"
    assert written["time"].tolist() == expected


@st.composite
def date_filters(draw: Any) -> tuple[pd.DatetimeIndex, Any, Any]:
    ms = draw(st.lists(st.integers(-(10**12), 3 * 10**12), min_size=1, max_size=5))
    zone = draw(st.sampled_from(ZONES))
    times = pd.DatetimeIndex(np.array(ms, dtype="datetime64[ms]"), tz="UTC").tz_convert(zone)
    # Boundaries on or near the images' own instants, in any zone, to hit the edges.
    instants = st.one_of(
        st.sampled_from(list(times)),
        st.integers(-(10**12), 3 * 10**12).map(lambda m: pd.Timestamp(m, unit="ms", tz="UTC")),
    )
    edges = st.tuples(instants, st.sampled_from(ZONES)).map(lambda p: p[0].tz_convert(p[1]))
    start = draw(edges)
    end = draw(st.one_of(st.none(), edges.filter(lambda t: t >= start)))
    return times, start, end


@given(date_filters())
def test_filter_date_on_aware_cubes_keeps_what_pandas_compares_in(args: Any) -> None:
    times, start, end = args
    ids = [f"i{k}" for k in range(len(times))]
    cube = make(Case({"time": times, "id": ("time", ids)}, len(times)))
    if end is None:  # EE's default: one millisecond
        keep = [i for i, t in zip(ids, times, strict=True) if t == start]
    else:
        keep = [i for i, t in zip(ids, times, strict=True) if start <= t < end]
    kept = cube.ee.filterDate(start, end)
    assert [str(v) for v in kept.coords["id"].values] == keep
    order = pd.Series(list(times)).sort_values(kind="stable").index
    by_time = cube.ee.sort("system:time_start")
    assert [str(v) for v in by_time.coords["id"].values] == [ids[k] for k in order]
