"""Pathfinder generator: images of curved dashed paths, two marked end points, distractor paths;
the label says whether the two markers lie on the same path. Written for this project after the
task's description (Linsley et al. 2018; LRA's Pathfinder and Path-X).

Each image is a scene of two *target* paths of `contour_length` dashes ("paddles") that start
`seed_distance` pixels apart, plus short distractor paths (`contour_length // 3` dashes). A path
is grown dash by dash: the next dash turns by at most `max_turn`, small turns being likelier
(weight exp(−turn²/2·turn_std²)), so paths are smooth curves; a path that runs into a dead end
backs up and tries other turns (the two target paths grow in turn, like twins).

The scene is drawn before the label is used, so positive and negative images differ only in where
the markers go: one marker at the start of target path a, the other at the end of path a
(label 1) or of the other target path (label 0). Scene statistics (pixel count, number of paths)
carry no information about the label; only following the path does.

Geometry invariants (checked by the tests with a flood fill), with `link` = ⌊gap⌋ + 1 pixels
(2 at 32×32, 4 at 128×128; see `Geometry.link`):
- consecutive dashes of a path are within Chebyshev distance `link` of each other;
- pixels of different paths are at Chebyshev distance > `link`, and the marker squares around the
  target paths' four end points are reserved, so no other path comes near them;
- a path does not touch its own earlier dashes.
So "the markers are joined through lit pixels at most `link` apart" is exactly "label 1".

Labels are balanced exactly: a seeded permutation of alternating 0/1 over all images. Image `i`'s
scene depends only on (seed, i) (a `random.Random` seeded with "pathfinder:<seed>:<i>").

Output, in the LRA release's layout: `<out>/pathfinder<size>/<level>/imgs/<b>/sample_<j>.png`
(8-bit grayscale, paths and markers 255 on 0) and `<out>/pathfinder<size>/<level>/metadata/<b>.npy`,
text with one line per image: `imgs/<b> sample_<j>.png <j> <label> <turn_std> <contour_length>
<distractor_length> <paddle_length> 1 <gap> 1` (the columns of the original generator; readers
use the first four). `<b>` numbers batches of `images_per_batch` images. The level directory is
written in a temporary directory and renamed into place.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ssm.data.base import check_int, import_optional
from ssm.data.image import pathfinder_level

SELF_SEPARATION = 1  # a path does not touch its own earlier dashes
MAX_SCENE_RESTARTS = 500
MAX_DISTRACTOR_TRIES = 20
N_TURNS = 11  # candidate turns per dash, evenly spaced in [−max_turn, max_turn]
N_FIRST_DIRECTIONS = 16  # candidate directions of a path's first dash

Pixel = tuple[int, int]  # (row, column)


@dataclass(frozen=True)
class Geometry:
    """Drawing parameters of one image size, in pixels and radians."""

    size: int
    paddle_length: float  # drawn length of one dash
    gap: float  # distance between the end of a dash and the start of the next (≤ 1.5)
    marker_half: int  # markers are squares of side 2·marker_half+1 centred on an end point
    border: int  # lit pixels keep this far from the image edge
    seed_distance: float  # distance between the start points of the two target paths
    n_distractors: int  # distractor paths attempted (fewer fit in a crowded image)
    turn_std: float  # scale of the turn between dashes
    max_turn: float  # largest turn between dashes

    @property
    def link(self) -> int:
        """Largest Chebyshev distance between the last pixel of a dash and the first of the next
        (rounding moves each end by at most half a pixel per axis). Other paths keep at least
        `link + 1` away, so pixels within `link` of each other belong to the same path."""
        return math.floor(self.gap) + 1


# One row per image size, the columns in Geometry's field order:
#   size  paddle_length  gap  marker_half  border  seed_distance  n_distractors  turn_std  max_turn
GEOMETRY_TABLE = [
    (32, 1.5, 1.5, 1, 1, 7.0, 5, 0.5, 1.6),
    (128, 5.0, 3.0, 2, 1, 20.0, 15, 0.3, 1.0),
]
GEOMETRIES = {row[0]: Geometry(*row) for row in GEOMETRY_TABLE}


def _round(value: float) -> int:
    return math.floor(value + 0.5)


def _dilate_into(mask: bytearray, size: int, pixels: list[Pixel], radius: int) -> None:
    """Set every cell of the flat (size × size) `mask` within Chebyshev distance `radius` of
    `pixels`."""
    for r, c in pixels:
        c0, c1 = max(c - radius, 0), min(c + radius + 1, size)
        for row in range(max(r - radius, 0), min(r + radius + 1, size)):
            mask[row * size + c0 : row * size + c1] = b"\x01" * (c1 - c0)


class _Path:
    """A path being grown: its dashes, and flat masks of the cells near it."""

    def __init__(self, size: int, start: tuple[float, float], separation: int) -> None:
        self.size = size
        self.separation = separation
        self.start = start
        self.point = start  # where the next dash begins
        self.end = start  # where the last dash ends
        self.direction = 0.0
        self.dashes: list[list[Pixel]] = []
        self.near = bytearray(size * size)  # its pixels and reserved squares, within `separation`
        self.near_old = bytearray(size * size)  # its dashes but the newest, within SELF_SEPARATION
        self._history: list[tuple] = []

    def push(
        self, dash: list[Pixel], reserved: list[Pixel], direction: float, end: tuple[float, float], gap: float
    ) -> None:
        """Append a dash ending at `end`; `reserved` cells are kept clear of other paths."""
        self._history.append((bytes(self.near), bytes(self.near_old), self.point, self.end, self.direction))
        if self.dashes:  # the previous dash now counts for self-avoidance
            _dilate_into(self.near_old, self.size, self.dashes[-1], SELF_SEPARATION)
        _dilate_into(self.near, self.size, dash + reserved, self.separation)
        self.dashes.append(dash)
        self.direction = direction
        self.end = end
        self.point = (end[0] + gap * math.sin(direction), end[1] + gap * math.cos(direction))

    def pop(self) -> None:
        """Undo the last `push`."""
        near, near_old, self.point, self.end, self.direction = self._history.pop()
        self.near, self.near_old = bytearray(near), bytearray(near_old)
        self.dashes.pop()

    @property
    def pixels(self) -> list[Pixel]:
        return [pixel for dash in self.dashes for pixel in dash]


class _Scene:
    """The paths of one image, placed one group after another; `blocked` is the union of the
    placed paths' `near` masks."""

    def __init__(self, geometry: Geometry, rng: random.Random) -> None:
        self.g = geometry
        self.rng = rng
        self.paths: list[_Path] = []
        self.blocked = bytearray(geometry.size * geometry.size)
        n_samples = math.ceil(geometry.paddle_length * 2) + 1
        self._along = [geometry.paddle_length * k / (n_samples - 1) for k in range(n_samples)]

    def _free(self, pixels: list[Pixel], path: _Path, growing: list[_Path]) -> bool:
        """All `pixels` inside the image and away from placed paths, from the other paths in
        `growing`, and from `path`'s older dashes."""
        size, low, high = self.g.size, self.g.border, self.g.size - self.g.border
        masks = [self.blocked, path.near_old, *(other.near for other in growing if other is not path)]
        for r, c in pixels:
            if not (low <= r < high and low <= c < high):
                return False
            cell = r * size + c
            if any(mask[cell] for mask in masks):
                return False
        return True

    def _dash(self, path: _Path, direction: float, growing: list[_Path]) -> list[Pixel] | None:
        """Pixels of a 1-px dash of length paddle_length from `path.point` along `direction`
        (sampled every half pixel, so the pixels are 8-connected), or None as soon as one of them
        is not free."""
        (y, x), dy, dx = path.point, math.sin(direction), math.cos(direction)
        pixels: list[Pixel] = []
        for t in self._along:
            pixel = (math.floor(y + t * dy + 0.5), math.floor(x + t * dx + 0.5))
            if pixels and pixel == pixels[-1]:
                continue
            if not self._free([pixel], path, growing):
                return None
            pixels.append(pixel)
        return pixels

    def _marker_square(self, point: tuple[float, float]) -> list[Pixel]:
        r, c, half = _round(point[0]), _round(point[1]), self.g.marker_half
        return [(r + dr, c + dc) for dr in range(-half, half + 1) for dc in range(-half, half + 1)]

    def _directions(self, path: _Path) -> list[float]:
        """Candidate directions for the next dash in the order to try them: evenly spaced around
        the start for a first dash; otherwise turns in [−max_turn, max_turn], ordered by weighted
        sampling without replacement (weight exp(−turn²/2·turn_std²), Efraimidis–Spirakis keys)."""
        g, rng = self.g, self.rng
        if not path.dashes:
            offset = rng.uniform(0.0, 2 * math.pi)
            return [offset + k * 2 * math.pi / N_FIRST_DIRECTIONS for k in range(N_FIRST_DIRECTIONS)]
        turns = [g.max_turn * (2 * k / (N_TURNS - 1) - 1) + rng.uniform(-0.05, 0.05) for k in range(N_TURNS)]
        keys = [rng.expovariate(1.0) / math.exp(-0.5 * (turn / g.turn_std) ** 2) for turn in turns]
        return [path.direction + turn for _, turn in sorted(zip(keys, turns, strict=True))]

    def grow(
        self, starts: list[tuple[float, float]], n_dashes: int, reserve_markers: bool, budget: int
    ) -> list[_Path] | None:
        """Place one path of `n_dashes` dashes from each start, adding a dash to each in turn and
        backing up out of dead ends (at most `budget` dashes placed per path); None if they do not
        fit. With `reserve_markers`, marker squares around all end points are kept clear (also of
        each other: a path's end square stays more than `link` from its start square)."""
        g = self.g
        paths: list[_Path] = []
        start_zones: list[list[Pixel]] = []
        start_guards: list[set[Pixel]] = []  # cells within `link` of each start square
        for start in starts:
            path = _Path(g.size, start, g.link)
            zone = self._marker_square(start) if reserve_markers else [(_round(start[0]), _round(start[1]))]
            if not self._free(zone, path, paths):
                return None
            _dilate_into(path.near, g.size, zone, g.link)
            start_zones.append(zone)
            start_guards.append(
                {
                    (r + dr, c + dc)
                    for r, c in zone
                    for dr in range(-g.link, g.link + 1)
                    for dc in range(-g.link, g.link + 1)
                }
            )
            paths.append(path)
        moves = [(k, j) for k in range(n_dashes) for j in range(len(paths))]
        budget *= len(paths)

        def place(move: int) -> bool:
            nonlocal budget
            if move == len(moves):
                return True
            k, j = moves[move]
            path, last = paths[j], k == n_dashes - 1
            for direction in self._directions(path):
                dash = self._dash(path, direction, paths)
                if dash is None:
                    continue
                end = (
                    path.point[0] + g.paddle_length * math.sin(direction),
                    path.point[1] + g.paddle_length * math.cos(direction),
                )
                reserved = self._marker_square(end) if reserve_markers and last else []
                if reserved and (
                    not self._free(reserved, path, paths) or any(cell in start_guards[j] for cell in reserved)
                ):
                    continue
                budget -= 1
                if budget < 0:
                    return False
                path.push(dash, reserved + (start_zones[j] if k == 0 else []), direction, end, g.gap)
                if place(move + 1):
                    return True
                path.pop()
            return False

        if not place(0):
            return None
        for path in paths:
            self.paths.append(path)
            blocked = np.frombuffer(self.blocked, dtype=np.uint8)  # a view: OR in place
            blocked |= np.frombuffer(path.near, dtype=np.uint8)
        return paths


def draw_scene(
    geometry: Geometry, contour_length: int, rng: random.Random
) -> tuple[np.ndarray, list[tuple[tuple[float, float], tuple[float, float]]]]:
    """(image uint8 (size, size) without markers, [(start, end) of each of the two target paths])."""
    g = geometry
    low, high = g.border + g.marker_half, g.size - g.border - g.marker_half
    n_distractor_dashes = max(1, contour_length // 3)
    for _ in range(MAX_SCENE_RESTARTS):
        scene = _Scene(g, rng)
        first = (rng.uniform(low, high), rng.uniform(low, high))
        angle = rng.uniform(0.0, 2 * math.pi)
        second = (first[0] + g.seed_distance * math.sin(angle), first[1] + g.seed_distance * math.cos(angle))
        targets = scene.grow([first, second], contour_length, True, budget=4 * contour_length)
        if targets is None:
            continue
        for _ in range(g.n_distractors):
            for _ in range(MAX_DISTRACTOR_TRIES):
                start = (rng.uniform(g.border, g.size - g.border), rng.uniform(g.border, g.size - g.border))
                if scene.grow([start], n_distractor_dashes, False, budget=4 * n_distractor_dashes):
                    break
        image = np.zeros((g.size, g.size), dtype=np.uint8)
        for path in scene.paths:
            rows, cols = zip(*path.pixels, strict=True)
            image[list(rows), list(cols)] = 255
        return image, [(path.start, path.end) for path in targets]
    raise ValueError(
        f"could not fit two paths of {contour_length} dashes in {g.size}x{g.size} pixels "
        f"after {MAX_SCENE_RESTARTS} tries; use a shorter contour length"
    )


def draw_markers(image: np.ndarray, points: list[tuple[float, float]], half: int) -> np.ndarray:
    """A copy of `image` with a lit square of side 2·half+1 centred on each point."""
    marked = image.copy()
    for point in points:
        r, c = _round(point[0]), _round(point[1])
        marked[r - half : r + half + 1, c - half : c + half + 1] = 255
    return marked


def pathfinder_image(geometry: Geometry, contour_length: int, label: int, rng: random.Random) -> np.ndarray:
    """One image: markers at the start of a target path and at the end of the same path (label 1)
    or of the other one (label 0)."""
    image, targets = draw_scene(geometry, contour_length, rng)
    first = rng.randrange(2)
    second = first if label == 1 else 1 - first
    return draw_markers(image, [targets[first][0], targets[second][1]], geometry.marker_half)


def _write_images(
    geometry: Geometry,
    contour_length: int,
    seed: int,
    image_dir: Path,
    batch: int,
    first_index: int,
    first_j: int,
    labels: list[int],
) -> list[str]:
    """Draw and save images first_index.. (file numbers first_j.. within batch `batch`); returns
    their metadata lines. Runs in worker processes: the images depend only on the arguments."""
    Image = import_optional("PIL.Image", "pillow", "generating Pathfinder images")
    distractor_length = max(1, contour_length // 3)
    lines = []
    for offset, label in enumerate(labels):
        i, j = first_index + offset, first_j + offset
        image = pathfinder_image(geometry, contour_length, label, random.Random(f"pathfinder:{seed}:{i}"))
        Image.fromarray(image).save(image_dir / f"sample_{j}.png", format="PNG")
        lines.append(
            f"imgs/{batch} sample_{j}.png {j} {label} {geometry.turn_std} {contour_length} "
            f"{distractor_length} {geometry.paddle_length} 1 {geometry.gap} 1\n"
        )
    return lines


def generate_pathfinder(
    out_dir: str | Path,
    *,
    size: int = 32,
    contour_length: int = 14,
    n_images: int = 20_000,
    seed: int = 0,
    images_per_batch: int = 1000,
    workers: int = 1,
    force: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write `n_images` Pathfinder images and their metadata; returns the level directory
    `<out_dir>/pathfinder<size>/<level>` (level `curv_contour_length_<contour_length>`, or
    `curv_baseline` for 6). The files depend only on (size, contour_length, n_images, seed,
    images_per_batch), not on `workers` (processes drawing in parallel). `progress(k)` gets the
    number of images written. Raises ValueError for bad options and FileExistsError if the level
    exists and not `force`.
    """
    if size not in GEOMETRIES:
        raise ValueError(f"size must be one of {', '.join(map(str, GEOMETRIES))}, got {size!r}")
    geometry = GEOMETRIES[size]
    contour_length = check_int("contour_length", contour_length, minimum=2)
    n_images = check_int("n_images", n_images)
    seed = check_int("seed", seed, minimum=0)
    images_per_batch = check_int("images_per_batch", images_per_batch)
    workers = check_int("workers", workers)
    # Two target paths, each a band 2·link+1 pixels wide, must fit inside the border.
    band_area = 2 * contour_length * (geometry.paddle_length + geometry.gap) * (2 * geometry.link + 1)
    if band_area > (size - 2 * geometry.border) ** 2:
        raise ValueError(f"contour_length={contour_length} is too long for {size}x{size} images")
    size_dir = Path(out_dir) / f"pathfinder{size}"
    level_dir = size_dir / pathfinder_level(contour_length)
    if level_dir.exists() and not force:
        raise FileExistsError(f"{level_dir} exists; pass force=True (CLI: --force) to replace it")

    size_dir.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix=f".tmp-{level_dir.name}-", dir=size_dir))
    try:
        labels = np.random.default_rng([seed, 1]).permutation(np.arange(n_images) % 2).tolist()
        (work_dir / "metadata").mkdir()
        chunks = []  # (batch, first image, first file number, count): ≤ 100 images per job
        for batch_start in range(0, n_images, images_per_batch):
            batch = batch_start // images_per_batch
            (work_dir / "imgs" / str(batch)).mkdir(parents=True)
            batch_stop = min(batch_start + images_per_batch, n_images)
            for start in range(batch_start, batch_stop, 100):
                chunks.append((batch, start, start - batch_start, min(100, batch_stop - start)))
        jobs = [
            (
                geometry,
                contour_length,
                seed,
                work_dir / "imgs" / str(batch),
                batch,
                start,
                j,
                labels[start : start + n],
            )
            for batch, start, j, n in chunks
        ]
        lines: dict[int, list[str]] = {}
        done = 0
        with ProcessPoolExecutor(workers) if workers > 1 else _InlineExecutor() as executor:
            for (batch, _, _, n), chunk_lines in zip(
                chunks, executor.map(_write_images, *zip(*jobs, strict=True)), strict=True
            ):
                lines.setdefault(batch, []).extend(chunk_lines)
                done += n
                if progress is not None:
                    progress(done)
        for batch, batch_lines in lines.items():
            (work_dir / "metadata" / f"{batch}.npy").write_text("".join(batch_lines))
        if level_dir.exists():  # force: move the old level aside, then delete it
            old = Path(tempfile.mkdtemp(prefix=".tmp-old-", dir=size_dir))
            os.rename(level_dir, old / level_dir.name)
            os.rename(work_dir, level_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(work_dir, level_dir)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return level_dir


class _InlineExecutor:
    """`executor.map` in this process (one worker: no process start-up)."""

    def __enter__(self) -> _InlineExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def map(self, fn: Callable, *iterables: Iterable) -> Iterator:
        return map(fn, *iterables)
