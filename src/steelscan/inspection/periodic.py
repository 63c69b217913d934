"""Periodic defects: roll marks that repeat once per roll turn at a constant pitch along the coil.

A dent or bump on a work roll imprints the strip once per turn, so its marks are defects of one class at
about the same across position, spaced pitch = pi x roll diameter along the coil. `find_periodic`:

1. Per class, sort the defects by `across_mm`; split them into tracks where consecutive gaps exceed
   `across_tol_mm`.
2. In a track with >= `min_count` defects, candidate pitches are the pairwise along-differences within
   `pitch_range_m`. Differences vote for each other (+-`along_tol_mm`); the best-voted few (first among
   pairs that a third defect continues), with their halves and thirds, are tried. For each pitch and
   start defect the support counts the defects within `along_tol_mm` of start + n * pitch (any integer n:
   turns may be missing) and within `across_tol_mm` across. From the best start, pitch and phase are
   refined by least squares of along position vs. the integer turn index, reaching out turn by turn. A
   group is accepted when count >= `min_count`, missing turns / turns spanned <= `max_missing_share`, RMS
   residual <= `along_tol_mm` / 2 and it is unlikely to be chance (below); the most members win.
3. A defect joins one finding at most: members leave the track and it is searched again (two rolls can
   mark one track).
4. Findings are sorted by count, most first.

Chance alignments: pitches taken from pairwise differences let random defects line up. A random defect
falls within +-tol of a turn with probability q = 2 tol / pitch; over the group's span mu = q x (the
defects expected there: the non-members in it, or the track's mean density, whichever is more). A group
is kept when (pairs tried) x P[Poisson(mu) >= count - 2] < `CHANCE` (the pair that set the pitch is free).
Chance hits spread evenly over +-tol have an RMS of tol / sqrt(3) while a real mark repeats to a few mm,
hence the residual limit. Cost: O(n^2) per track and search; tracks hold tens to hundreds of defects.
Defects with a non-finite position are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from steelscan.core.errors import SteelscanError
from steelscan.inspection.records import Defect

CHANCE = 0.05  # expected chance groups at least as strong, above which a group is not reported
N_PEAKS = 8  # best-voted pitches tried per search


@dataclass(frozen=True)
class PeriodicFinding:
    class_name: str
    pitch_m: float  # refined by least squares of position vs. turn index
    roll_diameter_m: float  # pitch_m / pi
    count: int  # defects in the group
    across_mm: float  # median across position of the group
    first_along_m: float
    defect_ids: list[int]
    residual_mm: float  # RMS of the positions about the fitted line, mm
    missing: int  # turns inside the group's span with no defect found (missed or healed)

    def as_dict(self) -> dict:
        return asdict(self)


def _fields(d: Defect | dict) -> tuple[int, str, float, float]:
    """(id, class name, along m, across mm) of a Defect or its dict form ("class" for class_name)."""
    try:
        if isinstance(d, dict):
            return int(d["id"]), str(d["class"]), float(d["along_m"]), float(d["across_mm"])
        return int(d.id), str(d.class_name), float(d.along_m), float(d.across_mm)
    except (KeyError, AttributeError, TypeError, ValueError) as exc:
        raise SteelscanError(
            f"expected Defects or dicts with id, class, along_m, across_mm; got {d!r} ({exc})") from None


def _num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _check(min_count, pitch_range_m, across_tol_mm, along_tol_mm, share) -> tuple[float, float]:
    """The pitch range in mm, after checking every argument."""
    if isinstance(min_count, bool) or not isinstance(min_count, (int, np.integer)) or min_count < 3:
        raise SteelscanError(f"min_count must be an integer >= 3, got {min_count!r}")
    pr = list(pitch_range_m) if isinstance(pitch_range_m, (tuple, list, np.ndarray)) else []
    lo, hi = (_num(pr[0]), _num(pr[1])) if len(pr) == 2 else (math.nan, math.nan)
    if not 0 < lo < hi < math.inf:
        raise SteelscanError(f"pitch_range_m must be (min, max) metres with 0 < min < max, got {pitch_range_m!r}")
    if not all(0 < _num(t) < math.inf for t in (across_tol_mm, along_tol_mm)):
        raise SteelscanError(f"across_tol_mm and along_tol_mm must be > 0 mm, got {across_tol_mm!r}, {along_tol_mm!r}")
    if not 0 <= _num(share) < 1:
        raise SteelscanError(f"max_missing_share must be in [0, 1), got {share!r}")
    return lo * 1000.0, hi * 1000.0


def _poisson_tail(k: int, mu: float) -> float:
    """P[Poisson(mu) >= k], summed upwards from k (no cancellation for tiny tails)."""
    if k <= 0:
        return 1.0
    if mu <= 0:
        return 0.0
    term, total, j = math.exp(k * math.log(mu) - mu - math.lgamma(k + 1)), 0.0, k
    while term > total * 1e-12 and j < k + 10_000:
        total, j = total + term, j + 1
        term *= mu / j
    return total


def _peaks(diff: np.ndarray, tol: float, peaks: list[float]) -> None:
    """Add to `peaks` the best-voted of the sorted differences: each votes for those within +-tol."""
    starts, ends = np.searchsorted(diff, diff - tol), np.searchsorted(diff, diff + tol, side="right")
    goal = len(peaks) + N_PEAKS
    for k in np.argsort(starts - ends, kind="stable")[: 50 * N_PEAKS]:
        centre = float(np.median(diff[starts[k]:ends[k]]))
        if len(peaks) < goal and all(abs(centre - p) > tol for p in peaks):
            peaks.append(centre)


def _pitches(a: np.ndarray, lo: float, hi: float, tol: float) -> tuple[list[float], int]:
    """(pitches to try, pair differences in range)."""
    i, j = np.triu_indices(len(a), 1)
    diff = a[j] - a[i]
    keep = (diff >= lo) & (diff <= hi)
    i, j, diff = i[keep], j[keep], diff[keep]
    # A roll mark's consecutive-turn pairs pile up at the pitch. In a dense track random pairs bury that
    # pile, but they seldom go on: first vote among pairs with a third defect one more difference ahead.
    ahead = a[j] + diff
    k = np.minimum(np.searchsorted(a, ahead - tol), len(a) - 1)
    peaks: list[float] = []
    _peaks(np.sort(diff[np.abs(a[k] - ahead) <= tol]), tol, peaks)
    _peaks(np.sort(diff), tol, peaks)
    # Many missed turns can let two-turn pairs outvote one-turn pairs: try halves and thirds too.
    return peaks + [p / m for p in peaks for m in (2, 3) if p / m >= lo], len(diff)


def _fit(a: np.ndarray, x: np.ndarray, pitch: float, lo: float, hi: float, tol: float, xtol: float):
    """(members, turn indices) of the best-supported lattice near `pitch`, or None."""
    rel = a[None, :] - a[:, None]  # start x defect: O(n^2)
    turns = np.rint(rel / pitch)
    hit = (np.abs(rel - turns * pitch) <= tol) & (np.abs(x[None, :] - x[:, None]) <= xtol)
    start = int(np.argmax(hit.sum(1)))
    # Refine outwards from the start, doubling the reach in turns: a guess off by e mm drifts n * e in n
    # turns, so its far hits are chance ones that would skew the fit; the near ones pin the pitch first.
    tt = turns[start]
    reach = np.sort(np.abs(tt[hit[start]]))[min(2, int(hit[start].sum()) - 1)]  # the start and two more
    members = np.flatnonzero(hit[start] & (np.abs(tt) <= reach))
    for _ in range(40):
        if len(np.unique(tt[members])) < 2:
            return None
        pitch, icpt = np.polyfit(tt[members], a[members], 1)
        if not lo <= pitch <= hi:
            return None
        tt = np.rint((a - icpt) / pitch)
        r = np.abs(a - icpt - tt * pitch)
        near = np.abs(tt - tt[start]) <= reach
        ok = np.flatnonzero((r <= tol) & near & (np.abs(x - np.median(x[members])) <= xtol))
        ok = ok[np.argsort(r[ok], kind="stable")]
        new = np.sort(ok[np.unique(tt[ok], return_index=True)[1]])  # one defect per turn: the closest
        if np.array_equal(new, members) and near.all():
            break
        members, reach = new, reach * 2
    order = np.argsort(tt[members])
    return members[order], tt[members][order]


def _search(name, ids, a, x, extent, lo, hi, tol, xtol, min_count, share):
    """(finding, member indices) of the best accepted group in one track (`a` along mm, sorted), or None."""
    pitches, trials = _pitches(a, lo, hi, tol)
    best = None
    for p in pitches:
        fit = _fit(a, x, p, lo, hi, tol, xtol)
        if fit is None:
            continue
        members, t = fit
        # A chance hit far beyond the group's end inflates the missing share: drop ends across long gaps.
        while len(t) > min_count and 1 - len(t) / (t[-1] - t[0] + 1) > share:
            members, t = (members[1:], t[1:]) if t[1] - t[0] >= t[-1] - t[-2] else (members[:-1], t[:-1])
        if len(t) < min_count:
            continue
        pitch, icpt = np.polyfit(t, a[members], 1)
        span = int(t[-1] - t[0] + 1)
        residual = float(np.sqrt(np.mean((a[members] - icpt - t * pitch) ** 2)))
        if not lo <= pitch <= hi or 1 - len(t) / span > share or residual > tol / 2:
            continue
        inside = int(np.sum((a >= a[members[0]] - tol) & (a <= a[members[-1]] + tol))) - len(t)
        mu = 2 * tol / pitch * max(inside, (len(a) - 2) * span * pitch / extent)
        if trials * _poisson_tail(len(t) - 2, mu) >= CHANCE:
            continue
        key = (len(t), -span, -residual)
        if best is None or key > best[0]:
            best = (key, members, float(pitch), residual, span - len(t))
    if best is None:
        return None
    _, members, pitch, residual, missing = best
    return PeriodicFinding(
        class_name=name, pitch_m=pitch / 1000.0, roll_diameter_m=pitch / 1000.0 / math.pi, count=len(members),
        across_mm=float(np.median(x[members])), first_along_m=float(a[members[0]] / 1000.0),
        defect_ids=[int(ids[m]) for m in members], residual_mm=residual, missing=int(missing)), members


def find_periodic(defects: Sequence[Defect] | Sequence[dict], min_count: int = 4,
                  pitch_range_m: tuple[float, float] = (0.5, 6.0), across_tol_mm: float = 15.0,
                  along_tol_mm: float = 10.0, max_missing_share: float = 0.34) -> list[PeriodicFinding]:
    """Periodic groups (roll marks) among a coil's defects, most members first. See the module docstring."""
    lo, hi = _check(min_count, pitch_range_m, across_tol_mm, along_tol_mm, max_missing_share)
    rows = [r for r in map(_fields, defects) if math.isfinite(r[2]) and math.isfinite(r[3])]
    if not rows:
        return []
    # The coil length as far as the defects show it: the track's mean density for the chance test.
    extent = max(1000.0 * (max(r[2] for r in rows) - min(r[2] for r in rows)), hi)
    findings = []
    for name in sorted({r[1] for r in rows}):
        mine = sorted((r for r in rows if r[1] == name), key=lambda r: r[3])
        across = np.array([r[3] for r in mine])
        for track in np.split(np.arange(len(mine)), np.flatnonzero(np.diff(across) > across_tol_mm) + 1):
            track = sorted(track, key=lambda k: mine[k][2])  # along order
            ids = np.array([mine[k][0] for k in track])
            a, x = np.array([mine[k][2] * 1000.0 for k in track]), np.array([mine[k][3] for k in track])
            while len(a) >= min_count:
                found = _search(name, ids, a, x, extent, lo, hi, along_tol_mm, across_tol_mm, min_count,
                                max_missing_share)
                if found is None:
                    break
                findings.append(found[0])
                left = np.ones(len(a), bool)
                left[found[1]] = False  # a defect joins one finding at most: search the rest again
                ids, a, x = ids[left], a[left], x[left]
    return sorted(findings, key=lambda f: (-f.count, f.class_name, f.first_along_m))
