"""LRA's image tasks, read as pixel sequences: CIFAR-10 ("image") and Pathfinder ("pathfinder",
"pathx"). Pixels run row by row (index = row·width + column); inputs are continuous float32
(n, L, C), truncated or zero-padded to `max_len`.

image — CIFAR-10 as its owners publish it (cifar-10-python.tar.gz):
`<data_dir>/cifar-10-batches-py/{data_batch_1..5, test_batch}`, Python pickles of a dict with
`b"data"` (uint8, (n, 3072): the 1024 red, then green, then blue values, each plane row-major) and
`b"labels"` (n ints 0–9). Grayscale by default: ITU-R 601-2 luma rounded to a byte exactly as
PIL's `convert("L")` (what torchvision's `Grayscale` does), normalized with S4's constants
(mean 122.6/255, std 61.0/255), 1 channel, length 1024. `rgb=True` keeps the 3 channels,
normalized per channel (S4's CIFAR constants). Validation: 10% of train (`val_fraction`) carved by
a fixed seed-42 permutation, as S4 does. The pickles are read by an unpickler that admits only what
numpy arrays and bytes need, so a hostile file cannot run code.

pathfinder / pathx — the LRA release's `<data_dir>/pathfinder32/<level>/` and
`<data_dir>/pathfinder128/<level>/` (level `curv_baseline`, `curv_contour_length_9` or, by
default as in LRA, `curv_contour_length_14`). `metadata/<k>.npy` files — plain text despite the
suffix, as in the release (a real NumPy string array is accepted too) — list one image per line,
space-separated: image directory (relative to the level directory, e.g. `imgs/0`), file name
(`sample_3.png`), image index, label (0/1), then generator parameters that are not read. Images are
grayscale PNGs of 32×32 or 128×128 pixels, normalized to [−1, 1] (S4's mean 0.5, std 0.5).
Split 80/10/10 by metadata order (files by their numeric name, lines in file order), as LRA's
`[:80%]`, `[80%:90%]`, `[90%:]` slices.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ssm.data.base import (
    SPLITS,
    BadItems,
    DataFormatError,
    DataNotFoundError,
    FileTaskOptions,
    Task,
    carve_validation,
    check_bool,
    check_fraction,
    file_task,
    import_optional,
    require_files,
)
from ssm.data.cache import CacheWriter, SplitArrays, build_info, items_builder, load_or_build, lra_task

LRA_RELEASE = "the LRA release (lra_release.gz from https://github.com/google-research/long-range-arena)"

# --- image (CIFAR-10) ---------------------------------------------------------------------------

CIFAR_DIR = "cifar-10-batches-py"
CIFAR_FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
CIFAR_PROVIDER = (
    "Download CIFAR-10 for Python (cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html) "
    "and unpack it into {data_dir}."
)
CIFAR_PIXELS = 1024
GRAY_MEAN, GRAY_STD = 122.6 / 255.0, 61.0 / 255.0
RGB_MEAN = np.array([0.4914, 0.4822, 0.4465])
RGB_STD = np.array([0.2023, 0.1994, 0.2010])


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes and numpy arrays; refuses every other global. (Protocol-2
    pickles written by Python 3 rebuild bytes with `_codecs.encode`; Python 2's do not need it.)"""

    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("_codecs", "encode"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")
        # Pickles from NumPy 1 name numpy.core, from NumPy 2 numpy._core: use the one installed.
        if hasattr(np, "_core"):
            module = module.replace("numpy.core.", "numpy._core.")
        else:
            module = module.replace("numpy._core.", "numpy.core.")
        return super().find_class(module, name)


def read_cifar_batch(path: Path, bad: BadItems) -> tuple[np.ndarray, np.ndarray]:
    """(pixels uint8 (n, 3072), labels int64 (n,)) of the valid images of one CIFAR-10 batch file.

    A file that does not unpickle to the published dict is one bad item; an image whose label is
    not 0–9 is a bad item named by its index. Bad items go to `bad` (raise unless skipping).
    """
    empty = np.zeros((0, 3 * CIFAR_PIXELS), np.uint8), np.zeros(0, np.int64)
    try:
        with open(path, "rb") as f:
            batch = _NumpyOnlyUnpickler(f, encoding="bytes").load()
    except Exception as error:  # any failure to decode means the file is corrupt
        bad.report(path, f"not a readable CIFAR-10 pickle ({type(error).__name__}: {error})")
        return empty
    data = batch.get(b"data") if isinstance(batch, dict) else None
    labels = batch.get(b"labels") if isinstance(batch, dict) else None
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        bad.report(path, 'expected key b"data" holding a uint8 array of shape (n, 3072)')
        return empty
    if not isinstance(labels, list | np.ndarray) or len(labels) != len(data):
        bad.report(path, f'expected key b"labels" holding {len(data)} labels')
        return empty
    labels = np.asarray(labels)
    valid = np.isin(labels, np.arange(10))
    for i in np.flatnonzero(~valid):
        bad.report(path, f"label must be 0-9, got {labels[i]!r}", item=f"image {i}")
    return data[valid], labels[valid].astype(np.int64)


def cifar_to_sequence(pixels: np.ndarray, rgb: bool) -> np.ndarray:
    """Normalized float32 pixel sequences (n, 1024, C) from CIFAR rows (n, 3072) uint8."""
    planes = pixels.reshape(-1, 3, CIFAR_PIXELS).astype(np.uint32)
    if rgb:
        values = planes.transpose(0, 2, 1) / 255.0
        return ((values - RGB_MEAN) / RGB_STD).astype(np.float32)
    red, green, blue = planes[:, 0], planes[:, 1], planes[:, 2]
    gray = (red * 19595 + green * 38470 + blue * 7471 + 0x8000) >> 16  # PIL's integer luma
    return ((gray / 255.0 - GRAY_MEAN) / GRAY_STD).astype(np.float32)[:, :, None]


def require_cifar_files(data_dir: Path) -> dict[str, list[Path]]:
    """The CIFAR-10 batches under `<data_dir>/cifar-10-batches-py/` by split (train, test);
    DataNotFoundError for the first missing."""
    root = data_dir / CIFAR_DIR
    files = {split: [root / name for name in names] for split, names in CIFAR_FILES.items()}
    sources = files["train"] + files["test"]
    require_files(sources, CIFAR_PROVIDER.format(data_dir=data_dir), what="CIFAR-10 batch")
    return files


@file_task(max_len=CIFAR_PIXELS)
def load_image(
    data_dir: Path, common: FileTaskOptions, *, rgb: bool = False, val_fraction: float = 0.1
) -> Task:
    """LRA image: CIFAR-10 from `<data_dir>/cifar-10-batches-py/` (10 classes, 1 or 3 channels)."""
    val_fraction = check_fraction("val_fraction", val_fraction)
    rgb = check_bool("rgb", rgb)
    files = require_cifar_files(data_dir)
    root, sources = data_dir / CIFAR_DIR, files["train"] + files["test"]
    channels = 3 if rgb else 1
    steps = min(common.max_len, CIFAR_PIXELS)

    def build(writer: CacheWriter) -> dict:
        bad = BadItems(common.skip_bad)
        pixels, labels = {}, {}
        for split, paths in files.items():
            batches = [read_cifar_batch(path, bad) for path in paths]
            pixels[split] = np.concatenate([p for p, _ in batches])
            labels[split] = np.concatenate([y for _, y in batches])
        train_index, val_index = carve_validation(len(labels["train"]), val_fraction)
        chosen = {
            "train": (pixels["train"][train_index], labels["train"][train_index]),
            "val": (pixels["train"][val_index], labels["train"][val_index]),
            "test": (pixels["test"], labels["test"]),
        }
        counts = {}
        for split in SPLITS:
            split_pixels, split_labels = chosen[split]
            arrays = SplitArrays(writer, split, len(split_labels), (common.max_len, channels), np.float32)
            for start in range(0, len(split_labels), 1000):
                stop = min(start + 1000, len(split_labels))
                arrays.x[start:stop, :steps] = cifar_to_sequence(split_pixels[start:stop], rgb)[:, :steps]
            arrays.y[: len(split_labels)] = split_labels
            arrays.lengths[: len(split_labels)] = steps
            arrays.n = len(split_labels)
            counts[split] = arrays.close()
        return build_info(counts, bad)

    options = {
        "max_len": common.max_len,
        "skip_bad": common.skip_bad,
        "rgb": rgb,
        "val_fraction": val_fraction,
    }
    entry = load_or_build(data_dir, "image", options, sources, CIFAR_DIR, build)
    return lra_task(
        entry, "image", common, options, root, n_classes=10, d_input=channels, input_type="continuous"
    )


# --- pathfinder, pathx ----------------------------------------------------------------------------

PATHFINDER_LEVEL_ALIASES = {
    "easy": "curv_baseline",
    "intermediate": "curv_contour_length_9",
    "medium": "curv_contour_length_9",
    "hard": "curv_contour_length_14",
}
LEVEL_PATTERN = re.compile(r"curv_baseline|curv_contour_length_(\d+)")
BASELINE_CONTOUR_LENGTH = 6  # LRA's "easy" level, curv_baseline


def pathfinder_level(contour_length: int) -> str:
    """The level directory name for paths of `contour_length` paddles (6 is `curv_baseline`)."""
    if contour_length == BASELINE_CONTOUR_LENGTH:
        return "curv_baseline"
    return f"curv_contour_length_{contour_length}"


def resolve_level(level: str) -> tuple[str, int]:
    """(level directory name, contour length) for a level name or an alias (easy/medium/hard)."""
    name = PATHFINDER_LEVEL_ALIASES.get(level, level) if isinstance(level, str) else level
    match = LEVEL_PATTERN.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        raise ValueError(
            f"option 'level' must be curv_baseline, curv_contour_length_<N> or one of "
            f"{', '.join(PATHFINDER_LEVEL_ALIASES)}; got {level!r}"
        )
    return name, int(match.group(1)) if match.group(1) else BASELINE_CONTOUR_LENGTH


def _metadata_order(path: Path) -> tuple[int, int, str]:
    return (0, int(path.stem), "") if path.stem.isdigit() else (1, 0, path.stem)


def _metadata_rows(path: Path) -> list[list[str]]:
    """The whitespace-separated fields of each line of a metadata file (text, or a NumPy array)."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw.startswith(b"\x93NUMPY"):
        with open(path, "rb") as f:
            table = np.load(f, allow_pickle=False)
        return [[str(v) for v in np.atleast_1d(row)] for row in np.atleast_2d(table)]
    return [line.split() for line in raw.decode("utf-8").splitlines()]


def read_pathfinder_metadata(level_dir: Path, provider: str, bad: BadItems) -> list[tuple[Path, int]]:
    """(image path, label) for every metadata row, in split order (see the module docstring)."""
    metadata_dir = level_dir / "metadata"
    if not metadata_dir.is_dir():
        raise DataNotFoundError(metadata_dir, provider, what="Pathfinder metadata directory")
    files = sorted(metadata_dir.glob("*.npy"), key=_metadata_order)
    if not files:
        raise DataNotFoundError(metadata_dir / "*.npy", provider, what="Pathfinder metadata")
    items = []
    for path in files:
        try:
            rows = _metadata_rows(path)
        except (UnicodeDecodeError, ValueError) as error:
            raise DataFormatError(path, f"not a Pathfinder metadata file ({error})") from error
        for line_no, fields in enumerate(rows, start=1):
            if not fields:
                continue
            if len(fields) < 4:
                bad.report(path, f"expected at least 4 fields, found {len(fields)}", line=line_no)
            elif fields[3] not in ("0", "1"):
                bad.report(path, f"label must be 0 or 1, got {fields[3]!r}", line=line_no)
            else:
                items.append((level_dir / fields[0] / fields[1], int(fields[3])))
    return items


def read_png(path: Path, side: int, bad: BadItems) -> np.ndarray | None:
    """The grayscale pixels (side, side) uint8 of one image, or None (reported to `bad`)."""
    Image = import_optional("PIL.Image", "pillow", "reading Pathfinder images")
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("L"))
    except FileNotFoundError:
        bad.report(path, "image listed in the metadata is missing")
        return None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        bad.report(path, f"unreadable image ({error})")
        return None
    if pixels.shape != (side, side):
        bad.report(path, f"expected {side}x{side} pixels, got {pixels.shape[1]}x{pixels.shape[0]}")
        return None
    return pixels


def pathfinder_location(data_dir: Path, side: int, level: str) -> tuple[str, Path, str]:
    """Where the Pathfinder images of `side` pixels and contour `level` live: the source root
    (`pathfinder<side>/<level>`), its directory under `data_dir`, and how to get them."""
    level_name, contour_length = resolve_level(level)
    source_root = f"pathfinder{side}/{level_name}"
    provider = (
        f"Generate it with `ssmbench data generate pathfinder --size {side} "
        f"--contour-length {contour_length} --data-dir {data_dir}`, or unpack {LRA_RELEASE} into {data_dir}."
    )
    return source_root, data_dir / source_root, provider


def require_pathfinder_metadata(data_dir: Path, side: int, level: str = "curv_contour_length_14") -> Path:
    """The metadata directory of a Pathfinder level; DataNotFoundError if it is missing."""
    _, level_dir, provider = pathfinder_location(data_dir, side, level)
    metadata_dir = level_dir / "metadata"
    if not metadata_dir.is_dir():
        raise DataNotFoundError(metadata_dir, provider, what="Pathfinder metadata directory")
    return metadata_dir


def _pathfinder_loader(name: str, side: int, dataset: str) -> Callable[..., Task]:
    """The loader of task `name`: Pathfinder images of `side`×`side` pixels from
    `<data_dir>/pathfinder<side>/<level>/`, as LRA's `dataset` (one loader, two image sizes)."""

    @file_task(max_len=side * side, own_options_first=True)
    def load(data_dir: Path, common: FileTaskOptions, *, level: str = "curv_contour_length_14") -> Task:
        source_root, level_dir, provider = pathfinder_location(data_dir, side, level)
        metadata_bad = BadItems(common.skip_bad)
        items = read_pathfinder_metadata(level_dir, provider, metadata_bad)
        # LRA's split in metadata order: the first 80% train, the next 10% val, the last 10% test.
        n_held = int(0.1 * len(items))
        first_val, first_test = len(items) - 2 * n_held, len(items) - n_held
        ranges = {"train": (0, first_val), "val": (first_val, first_test), "test": (first_test, len(items))}
        steps = min(common.max_len, side * side)

        def examples(split: str, bad: BadItems) -> Iterator[tuple[np.ndarray, int, int]]:
            start, stop = ranges[split]
            for path, label in items[start:stop]:
                pixels = read_png(path, side, bad)
                if pixels is not None:
                    # (v/255 − 0.5)/0.5, one channel
                    yield (pixels.reshape(-1)[:steps] / 127.5 - 1.0)[:, None], label, steps

        def capacity() -> dict[str, int]:
            return {split: stop - start for split, (start, stop) in ranges.items()}

        build = items_builder(
            common.skip_bad, capacity, (common.max_len, 1), np.float32, examples, metadata_bad
        )
        options = {"max_len": common.max_len, "skip_bad": common.skip_bad, "level": resolve_level(level)[0]}
        sources = [*sorted((level_dir / "metadata").glob("*.npy")), *(path for path, _ in items)]
        entry = load_or_build(data_dir, name, options, sources, source_root, build)
        return lra_task(
            entry, name, common, options, level_dir, n_classes=2, d_input=1, input_type="continuous"
        )

    load.__name__ = load.__qualname__ = f"load_{name}"
    load.__doc__ = (
        f"LRA {dataset}: {side}×{side} images from `<data_dir>/pathfinder{side}/<level>/` "
        f"(2 classes, length {side * side})."
    )
    return load


load_pathfinder = _pathfinder_loader("pathfinder", 32, "Pathfinder")
load_pathx = _pathfinder_loader("pathx", 128, "Path-X")
