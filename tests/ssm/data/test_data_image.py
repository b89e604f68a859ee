"""LRA image (CIFAR-10 pickles) and pathfinder / pathx (PNG + metadata) loaders on fixtures written
in the published formats."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ssm.data import DataFormatError, DataNotFoundError, get_task


def gray_sequence(row: np.ndarray) -> np.ndarray:
    """Expected grayscale input of one CIFAR row, computed with PIL and S4's constants."""
    rgb = row.reshape(3, 32, 32).transpose(1, 2, 0)
    gray = np.asarray(Image.fromarray(rgb, "RGB").convert("L"), dtype=np.float64).reshape(-1)
    return (gray / 255.0 - 122.6 / 255.0) / (61.0 / 255.0)


def test_image_grayscale_matches_pil_and_the_splits(published, tmp_path: Path):
    written = published.cifar(tmp_path, n_per_batch=4, n_test=5)
    task = get_task("image", data_dir=tmp_path)
    assert (task.kind, task.n_classes, task.d_input, task.seq_len) == ("classification", 10, 1, 1024)
    assert (task.input_type, task.pooling) == ("continuous", "mean")
    # 20 training images: int(20 * 0.9) = 18 train, 2 val (a fixed permutation); test_batch is test.
    assert (len(task.train), len(task.val), len(task.test)) == (18, 2, 5)
    assert task.train.x.shape == (18, 1024, 1) and task.train.x.dtype == torch.float32
    assert task.train.lengths.eq(1024).all()
    train_rows = [
        (row, label) for i in range(1, 6) for row, label in zip(*written[f"data_batch_{i}"], strict=True)
    ]
    expected = np.stack([gray_sequence(row) for row, _ in train_rows])
    found = []
    for split in ("train", "val"):
        dataset = task.split(split)
        for x, y in zip(dataset.x, dataset.y, strict=True):
            distance = np.abs(expected - x[:, 0].numpy()).max(axis=1)
            k = int(distance.argmin())
            assert distance[k] < 1e-5
            assert int(y) == train_rows[k][1]
            found.append(k)
    assert sorted(found) == list(range(20))  # train and val partition the five batches
    pixels, labels = written["test_batch"]
    for i in range(5):
        np.testing.assert_allclose(task.test.x[i, :, 0].numpy(), gray_sequence(pixels[i]), atol=1e-5)
    assert task.test.y.tolist() == labels


def test_image_rgb_keeps_three_normalized_channels(published, tmp_path: Path):
    written = published.cifar(tmp_path)
    task = get_task("image", data_dir=tmp_path, rgb=True)
    assert task.d_input == 3 and task.test.x.shape == (5, 1024, 3)
    row = written["test_batch"][0][0]
    mean, std = np.array([0.4914, 0.4822, 0.4465]), np.array([0.2023, 0.1994, 0.2010])
    expected = (row.reshape(3, 1024).T / 255.0 - mean) / std  # pixel-major, channels last
    np.testing.assert_allclose(task.test.x[0].numpy(), expected, atol=1e-5)


def test_image_truncated_pickle_names_the_file(published, tmp_path: Path):
    published.cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(DataFormatError, match="data_batch_3: not a readable CIFAR-10 pickle"):
        get_task("image", data_dir=tmp_path)
    task = get_task("image", data_dir=tmp_path, skip_bad=True)
    assert task.metadata["skipped"] == 1
    assert len(task.train) + len(task.val) == 16  # the other four batches


def test_image_bad_label_names_the_item(published, tmp_path: Path):
    published.cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    published.cifar_batch(path, np.zeros((3, 3072), np.uint8), [1, 10, 2])
    with pytest.raises(DataFormatError, match=r"test_batch \(image 1\): label must be 0-9"):
        get_task("image", data_dir=tmp_path)
    assert get_task("image", data_dir=tmp_path, skip_bad=True).test.y.tolist() == [1, 2]


class RunsCode:
    def __reduce__(self):
        return (os.getpid, ())


def test_image_unpickler_refuses_code(published, tmp_path: Path):
    published.cifar(tmp_path)
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "wb") as f:
        pickle.dump({b"data": RunsCode(), b"labels": []}, f, protocol=2)
    with pytest.raises(DataFormatError, match="is not allowed in a CIFAR batch"):
        get_task("image", data_dir=tmp_path)


def test_image_missing_batch(published, tmp_path: Path):
    published.cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_5").unlink()
    with pytest.raises(DataNotFoundError) as error:
        get_task("image", data_dir=tmp_path)
    assert error.value.path == tmp_path / "cifar-10-batches-py" / "data_batch_5"
    assert "cifar-10-python.tar.gz" in str(error.value)


# --- pathfinder / pathx -------------------------------------------------------------------------


def images(rng: np.random.Generator, n: int, side: int = 32) -> list[tuple[np.ndarray, int]]:
    return [(rng.integers(0, 256, (side, side), dtype=np.uint8), int(rng.integers(2))) for _ in range(n)]


def test_pathfinder_splits_80_10_10_in_metadata_order(published, tmp_path: Path):
    rng = np.random.default_rng(0)
    # Metadata files 0, 1, 2, 10: numeric order (10 last), not lexicographic (10 before 2).
    batches = {"0": images(rng, 5), "1": images(rng, 5), "2": images(rng, 5), "10": images(rng, 5)}
    published.pathfinder(tmp_path, 32, batches)
    task = get_task("pathfinder", data_dir=tmp_path)
    assert (task.kind, task.n_classes, task.d_input, task.seq_len) == ("classification", 2, 1, 1024)
    ordered = [item for name in ("0", "1", "2", "10") for item in batches[name]]
    expected = {"train": ordered[:16], "val": ordered[16:18], "test": ordered[18:]}
    for split, items in expected.items():
        dataset = task.split(split)
        assert dataset.x.shape == (len(items), 1024, 1)
        for i, (pixels, label) in enumerate(items):
            np.testing.assert_allclose(
                dataset.x[i, :, 0].numpy(), pixels.reshape(-1) / 127.5 - 1.0, atol=1e-6
            )
            assert dataset.y[i].item() == label
    assert task.train.lengths.eq(1024).all()


def test_pathfinder_reads_numpy_array_metadata(published, tmp_path: Path):
    level_dir = published.pathfinder(tmp_path, 32, {"0": images(np.random.default_rng(1), 10)})
    text = get_task("pathfinder", data_dir=tmp_path)
    rows = [line.split() for line in (level_dir / "metadata" / "0.npy").read_text().splitlines()]
    with open(level_dir / "metadata" / "0.npy", "wb") as f:  # the original generator's np.save form
        np.save(f, np.array(rows))
    array = get_task("pathfinder", data_dir=tmp_path)
    assert torch.equal(text.train.x, array.train.x) and torch.equal(text.test.y, array.test.y)


def test_pathx_reads_128_pixel_images_and_levels(published, tmp_path: Path):
    rng = np.random.default_rng(2)
    published.pathfinder(tmp_path, 128, {"0": images(rng, 10, side=128)}, level="curv_baseline")
    task = get_task("pathx", data_dir=tmp_path, level="easy")
    assert task.seq_len == 16384 and task.train.x.shape == (8, 16384, 1)
    with pytest.raises(DataNotFoundError, match="--size 128 --contour-length 14"):
        get_task("pathx", data_dir=tmp_path)  # default level: curv_contour_length_14
    with pytest.raises(ValueError, match="option 'level'"):
        get_task("pathx", data_dir=tmp_path, level="curv_impossible")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda png: png.write_bytes(b"not a png at all"), "unreadable image"),
        (lambda png: png.unlink(), "image listed in the metadata is missing"),
        (lambda png: Image.new("L", (16, 16)).save(png), "expected 32x32 pixels, got 16x16"),
    ],
)
def test_pathfinder_bad_images_are_named(published, tmp_path: Path, damage, message: str):
    level_dir = published.pathfinder(tmp_path, 32, {"0": images(np.random.default_rng(3), 10)})
    png = level_dir / "imgs" / "0" / "sample_4.png"
    damage(png)
    with pytest.raises(DataFormatError, match=message) as error:
        get_task("pathfinder", data_dir=tmp_path)
    assert str(png) in str(error.value)
    task = get_task("pathfinder", data_dir=tmp_path, skip_bad=True)
    assert task.metadata["skipped"] == 1 and len(task.train) == 7


def test_pathfinder_bad_metadata_row_names_file_and_line(published, tmp_path: Path):
    level_dir = published.pathfinder(tmp_path, 32, {"0": images(np.random.default_rng(4), 10)})
    metadata = level_dir / "metadata" / "0.npy"
    metadata.write_text(metadata.read_text() + "imgs/0 sample_9.png 9 maybe\n")
    with pytest.raises(DataFormatError, match=r"0\.npy, line 11: label must be 0 or 1"):
        get_task("pathfinder", data_dir=tmp_path)


def test_pathfinder_missing_metadata(tmp_path: Path):
    with pytest.raises(DataNotFoundError) as error:
        get_task("pathfinder", data_dir=tmp_path)
    assert error.value.path == tmp_path / "pathfinder32" / "curv_contour_length_14" / "metadata"
    assert f"ssmbench data generate pathfinder --size 32 --contour-length 14 --data-dir {tmp_path}" in str(
        error.value
    )
