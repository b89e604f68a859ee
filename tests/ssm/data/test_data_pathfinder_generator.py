"""The Pathfinder generator makes a real visual task: the label is exactly whether the two markers
are joined by a path (checked by a flood fill written here), classes are balanced, and nothing
but the path tells the classes apart."""

from __future__ import annotations

import hashlib
import math
from collections import deque
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ssm.data import get_task
from ssm.data.generate_pathfinder import GEOMETRIES, generate_pathfinder


def read_generated(level_dir: Path) -> list[tuple[np.ndarray, int]]:
    """(pixels, label) of every image, in metadata order, read from the files."""
    items = []
    for metadata in sorted((level_dir / "metadata").glob("*.npy"), key=lambda p: int(p.stem)):
        for line in metadata.read_text().splitlines():
            fields = line.split()
            pixels = np.asarray(Image.open(level_dir / fields[0] / fields[1]))
            items.append((pixels, int(fields[3])))
    return items


def markers(pixels: np.ndarray, half: int) -> list[tuple[int, int]]:
    """One pixel of each marker: fully lit (2·half+1)² squares, which 1-px paths cannot form.
    A path leaving a marker can extend the lit block by a pixel, so adjacent hits are one marker."""
    lit = pixels > 0
    side = 2 * half + 1
    found: list[tuple[int, int]] = []
    for r in range(lit.shape[0] - side + 1):
        for c in range(lit.shape[1] - side + 1):
            if lit[r : r + side, c : c + side].all():
                center = (r + half, c + half)
                if all(max(abs(center[0] - a), abs(center[1] - b)) > side for a, b in found):
                    found.append(center)
    return found


def joined(pixels: np.ndarray, start: tuple[int, int], goal: tuple[int, int], link: int) -> bool:
    """Flood fill over lit pixels, stepping up to `link` pixels in each axis (across dash gaps)."""
    lit = pixels > 0
    seen = {start}
    queue = deque([start])
    while queue:
        r, c = queue.popleft()
        if (r, c) == goal:
            return True
        for dr in range(-link, link + 1):
            for dc in range(-link, link + 1):
                nxt = (r + dr, c + dc)
                if 0 <= nxt[0] < lit.shape[0] and 0 <= nxt[1] < lit.shape[1] and lit[nxt] and nxt not in seen:
                    seen.add(nxt)
                    queue.append(nxt)
    return False


def check_labels_are_connectivity(items: list[tuple[np.ndarray, int]], size: int) -> None:
    geometry = GEOMETRIES[size]
    link = math.floor(geometry.gap) + 1
    for pixels, label in items:
        assert pixels.shape == (size, size) and set(np.unique(pixels)) <= {0, 255}
        found = markers(pixels, geometry.marker_half)
        assert len(found) == 2, f"expected two markers, found {found}"
        assert joined(pixels, found[0], found[1], link) == (label == 1)


@pytest.fixture(scope="module")
def generated_32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pathfinder")
    return generate_pathfinder(out, size=32, contour_length=6, n_images=200, seed=0, images_per_batch=64)


def test_labels_are_exactly_marker_connectivity(generated_32: Path):
    check_labels_are_connectivity(read_generated(generated_32), 32)


def test_classes_are_balanced_and_pixel_counts_do_not_reveal_them(generated_32: Path):
    items = read_generated(generated_32)
    labels = np.array([label for _, label in items])
    assert abs(labels.mean() - 0.5) < 0.05
    lit = np.array([(pixels > 0).sum() for pixels, _ in items], dtype=float)
    positives, negatives = lit[labels == 1], lit[labels == 0]
    standard_error = math.sqrt(positives.var() / len(positives) + negatives.var() / len(negatives))
    assert abs(positives.mean() - negatives.mean()) < 4 * standard_error


def test_lra_length_paths_and_path_x(tmp_path: Path):
    level = generate_pathfinder(tmp_path, size=32, contour_length=14, n_images=16, seed=1)
    assert level == tmp_path / "pathfinder32" / "curv_contour_length_14"
    check_labels_are_connectivity(read_generated(level), 32)
    level = generate_pathfinder(tmp_path, size=128, contour_length=14, n_images=6, seed=1)
    assert level == tmp_path / "pathfinder128" / "curv_contour_length_14"
    check_labels_are_connectivity(read_generated(level), 128)
    assert generate_pathfinder(tmp_path, size=32, contour_length=6, n_images=2).name == "curv_baseline"


def digest(directory: Path) -> str:
    hasher = hashlib.sha256()
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            hasher.update(path.relative_to(directory).as_posix().encode())
            hasher.update(path.read_bytes())
    return hasher.hexdigest()


def test_same_seed_gives_byte_identical_files(tmp_path: Path):
    options = {"size": 32, "contour_length": 9, "n_images": 24, "images_per_batch": 10}
    a = generate_pathfinder(tmp_path / "a", seed=5, **options)
    b = generate_pathfinder(tmp_path / "b", seed=5, workers=2, **options)
    c = generate_pathfinder(tmp_path / "c", seed=6, **options)
    assert digest(a) == digest(b)  # also independent of the number of worker processes
    assert digest(a) != digest(c)
    assert sorted(p.name for p in (a / "metadata").iterdir()) == ["0.npy", "1.npy", "2.npy"]


def test_loader_reads_what_the_generator_writes(generated_32: Path):
    task = get_task("pathfinder", data_dir=generated_32.parent.parent, level="easy")
    assert (len(task.train), len(task.val), len(task.test)) == (160, 20, 20)
    labels = [label for _, label in read_generated(generated_32)]
    assert task.train.y.tolist() + task.val.y.tolist() + task.test.y.tolist() == labels


def test_existing_level_needs_force(tmp_path: Path):
    generate_pathfinder(tmp_path, contour_length=6, n_images=4, seed=0)
    with pytest.raises(FileExistsError, match="--force"):
        generate_pathfinder(tmp_path, contour_length=6, n_images=4, seed=0)
    level = generate_pathfinder(tmp_path, contour_length=6, n_images=6, seed=0, force=True)
    assert len(read_generated(level)) == 6
    assert [p.name for p in level.parent.iterdir()] == ["curv_baseline"]  # no temporary leftovers
    with pytest.raises(ValueError, match="size must be one of 32, 128"):
        generate_pathfinder(tmp_path, size=64)
    with pytest.raises(ValueError, match="contour_length=60 is too long for 32x32 images"):
        generate_pathfinder(tmp_path, contour_length=60)
