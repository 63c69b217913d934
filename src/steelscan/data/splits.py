"""Train / val / test split of a `LabelledData`, with a JSON record that a run folder keeps as split.json.

Rule, in order (NEU's own split follows `val_remainders`, see `_own_split`):
1. the data set has its own `val` split: use its own splits (items with no split go to train);
2. it has no `val`: carve val out of train (plus items with no split), stratified by class, groups kept together;
3. `test` is only ever the data set's own: it is never carved automatically.
Severstal-style RLE folders without a split of their own keep the checksum rule they always had
(`checksum_val`), so the shipped Severstal models' validation numbers stay comparable.

Stratum of an image: its class (classification); its most frequent box class (detection); the rarest class
its mask shows, rarest over the data set, so rare classes get val images (segmentation); 'clean' for a
defect-free image. Each stratum sends round(fraction x groups) groups, at least one when it has two images
or more in two groups or more, to val. Which groups go is decided by a seeded hash of the group key, so the
split does not change when files are listed in another order or the folder moves.
"""

from __future__ import annotations

import hashlib
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass

from steelscan.core.errors import ConfigError
from steelscan.data.formats.base import SPLITS, Item, LabelledData

CLEAN = "clean"
NEU_FORMATS = ("neu-cls", "neu-det")  # own split by image number: see _own_split


@dataclass
class SplitResult:
    train: list[Item]
    val: list[Item]
    test: list[Item]
    record: dict  # JSON-able: rule, seed, fraction, counts and the item names on each side


def _rarity(data: LabelledData) -> dict[int, tuple[int, int]]:
    counts = data.instances_per_class()
    return {k: (n, k) for k, n in enumerate(counts)}


def stratum(item: Item, data: LabelledData, rarity: dict[int, tuple[int, int]]) -> str:
    """The class an item is stratified by (a class name, or 'clean')."""
    if data.task == "classification":
        return data.class_names[item.label] if item.label is not None else CLEAN
    if data.task == "detection":
        if len(item.labels) == 0:
            return CLEAN
        counts = Counter(int(k) for k in item.labels)
        # Most boxes wins; a tie goes to the rarer class.
        k = min(counts, key=lambda c: (-counts[c], rarity.get(c, (0, c))))
        return data.class_names[k]
    if not item.present:
        return CLEAN
    return data.class_names[min(item.present, key=lambda c: rarity.get(c, (0, c)))]


def _hash(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}\0{key}".encode()).hexdigest()


def stratified_val(items: list[Item], data: LabelledData, val_fraction: float, seed: int) -> set[str]:
    """Names of the items sent to val: per stratum, whole groups chosen by a seeded hash."""
    rarity = _rarity(data)
    units: dict[str, list[Item]] = defaultdict(list)
    for it in items:
        units[it.group if it.group is not None else f"\0{it.name}"].append(it)
    by_stratum: dict[str, list[str]] = defaultdict(list)
    images: Counter = Counter()
    for key, members in units.items():
        votes = Counter(stratum(it, data, rarity) for it in members)
        s = min(votes, key=lambda v: (-votes[v], v))  # a group spanning classes goes with its majority
        by_stratum[s].append(key)
        images[s] += len(members)
    val: set[str] = set()
    for s, keys in sorted(by_stratum.items()):
        keys.sort(key=lambda k: (_hash(seed, k), k))
        n = round(len(keys) * val_fraction)
        if val_fraction > 0 and images[s] >= 2 and len(keys) >= 2:
            n = max(n, 1)
        n = min(n, len(keys) - 1) if len(keys) >= 2 else 0  # train keeps at least one group of each stratum
        for k in keys[:n]:
            val.update(it.name for it in units[k])
    return val


def checksum_side(key: str, val_remainders: tuple[int, ...]) -> str:
    """'val' when crc32(key) % 5 is in `val_remainders`, else 'train': stable on every machine."""
    return "val" if zlib.crc32(key.encode()) % 5 in val_remainders else "train"


def checksum_val(items: list[Item], val_remainders: tuple[int, ...]) -> set[str]:
    """Severstal-style folders (format rle) without a split of their own: by their image file name, the rule
    every steelscan Severstal model was trained and measured with."""
    return {it.name for it in items if checksum_side(it.path.name, val_remainders) == "val"}


def _own_split(data: LabelledData, val_remainders: tuple[int, ...]) -> dict[str, str | None]:
    """Item name -> the data set's own split. NEU's is by image number (`group`): val when n % 5 is in
    `val_remainders` (the readers wrote the default, (4,)), so NEU-CLS and NEU-DET always split alike."""
    if data.format not in NEU_FORMATS:
        return {it.name: it.split for it in data.items}
    bad = [r for r in val_remainders if isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= 4]
    if bad:
        raise ConfigError(f"val_remainders must be numbers 1..4 (n % 5 == 0 is NEU's held-out fifth), got {bad}")
    return {it.name: ("val" if int(it.group) % 5 in val_remainders else "train") if (it.group or "").isdigit()
            else it.split for it in data.items}


def split_items(data: LabelledData, val_fraction: float = 0.2, seed: int = 0,
                val_remainders: tuple[int, ...] = (4,)) -> SplitResult:
    """Split `data` by the rule in the module docstring; the record lists every item name on its side."""
    if not isinstance(val_fraction, (int, float)) or not 0 <= val_fraction < 1:
        raise ConfigError(f"val_fraction must be a number in [0, 1), got {val_fraction!r}")
    val_remainders = tuple(val_remainders)
    side = _own_split(data, val_remainders)
    own = [s for s in SPLITS if s in set(side.values())]
    test = [it for it in data.items if side[it.name] == "test"]
    pool = [it for it in data.items if side[it.name] in ("train", None)]
    unassigned = sum(v is None for v in side.values()) if own else 0
    if "val" in own:
        rule = "own"
        train, val = pool, [it for it in data.items if side[it.name] == "val"]
    else:
        rule = "carved" if "train" in own else "stratified"
        if not own and data.format == "rle":
            rule = f"checksum: crc32(image file name) % 5 in {list(val_remainders)}"
            chosen = checksum_val(pool, val_remainders)
        else:
            chosen = stratified_val(pool, data, val_fraction, seed)
        train = [it for it in pool if it.name not in chosen]
        val = [it for it in pool if it.name in chosen]
    rarity = _rarity(data)
    record = {
        "rule": rule,
        "format": data.format,
        "seed": seed,
        "val_fraction": val_fraction,
        "own_splits": own,
        **({"val_remainders": list(val_remainders)} if data.format in NEU_FORMATS else {}),
        "unassigned_to_train": unassigned,
        "class_names": list(data.class_names),
        "counts": {side: len(items) for side, items in (("train", train), ("val", val), ("test", test))},
        "val_strata": dict(sorted(Counter(stratum(it, data, rarity) for it in val).items())),
        "train": sorted(it.name for it in train),
        "val": sorted(it.name for it in val),
        "test": sorted(it.name for it in test),
    }
    # One order whatever the layout lists first (by file name): the same data in any layout trains alike.
    order = lambda it: (it.path.name, it.name)  # noqa: E731
    return SplitResult(sorted(train, key=order), sorted(val, key=order), sorted(test, key=order), record)
