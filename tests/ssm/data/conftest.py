"""Writers for tiny fixtures in the formats the data's publishers use (LRA release, IMDB, CIFAR-10).

They are written here, independently of `ssm.data` (never with our generators), so the loader tests
check our reading of the published formats rather than our own round trip.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# LRA's ListOps rows: (Source with the generator's tree parentheses, Target).
LISTOPS_ROWS = {
    "train": [
        ("( ( ( [MAX 2 ) 9 ) ] )", 9),
        ("( ( ( ( [MIN 4 ) 7 ) 1 ) ] )", 1),
        ("( ( ( ( ( [SM 5 ) 8 ) ( ( ( [MED 3 ) 1 ) ] ) ) 2 ) ] )", 7),
        ("( ( ( ( [MED 1 ) 2 ) 9 ) ] )", 2),
        ("( ( ( [MAX 0 ) 0 ) ] )", 0),
    ],
    "val": [("( ( ( [MIN 6 ) 3 ) ] )", 3), ("( ( ( ( [SM 9 ) 9 ) 9 ) ] )", 7)],
    "test": [("( ( ( [MED 4 ) 8 ) ] )", 6), ("( ( ( [MAX 5 ) 3 ) ] )", 5)],
}


class Published:
    """Fixture writers, one per published format."""

    LISTOPS_ROWS = LISTOPS_ROWS

    @staticmethod
    def listops(data_dir: Path, rows: dict[str, list[tuple[str, object]]] = LISTOPS_ROWS) -> Path:
        """`listops-1000/basic_<split>.tsv`: header `Source\tTarget`, CRLF line ends (csv module)."""
        root = data_dir / "listops-1000"
        root.mkdir(parents=True, exist_ok=True)
        for split, split_rows in rows.items():
            lines = ["Source\tTarget"] + [f"{source}\t{target}" for source, target in split_rows]
            (root / f"basic_{split}.tsv").write_bytes(("\r\n".join(lines) + "\r\n").encode())
        return root

    @staticmethod
    def imdb(data_dir: Path, reviews: dict[str, dict[str, list[bytes]]]) -> Path:
        """`aclImdb/<split>/<pos|neg>/<id>_<rating>.txt`, plus an unlabeled `unsup/` to ignore."""
        root = data_dir / "aclImdb"
        for split, by_label in reviews.items():
            for label, texts in by_label.items():
                directory = root / split / label
                directory.mkdir(parents=True, exist_ok=True)
                for i, text in enumerate(texts):
                    rating = 8 if label == "pos" else 2
                    (directory / f"{i}_{rating}.txt").write_bytes(text)
        (root / "train" / "unsup").mkdir(parents=True, exist_ok=True)
        (root / "train" / "unsup" / "0_0.txt").write_bytes(b"unlabeled review")
        return root

    @staticmethod
    def aan(data_dir: Path, rows: dict[str, list[tuple[str, bytes, bytes]]]) -> Path:
        """`tsv_data/new_aan_pairs.<train|eval|test>.tsv`: label, id1, id2, text1, text2; no header."""
        root = data_dir / "tsv_data"
        root.mkdir(parents=True, exist_ok=True)
        for split, split_rows in rows.items():
            lines = [
                b"\t".join([label.encode(), f"P{i}-a".encode(), f"P{i}-b".encode(), text1, text2])
                for i, (label, text1, text2) in enumerate(split_rows)
            ]
            (root / f"new_aan_pairs.{split}.tsv").write_bytes(b"\n".join(lines) + b"\n")
        return root

    @staticmethod
    def cifar_batch(path: Path, pixels: np.ndarray, labels: list[int]) -> None:
        """A CIFAR-10 python batch: pickled dict with bytes keys, `b"data"` uint8 (n, 3072) holding
        the red, green and blue planes (row-major), `b"labels"` a list of ints."""
        path.parent.mkdir(parents=True, exist_ok=True)
        batch = {
            b"batch_label": b"fixture batch",
            b"labels": list(labels),
            b"data": pixels,
            b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))],
        }
        with open(path, "wb") as f:
            pickle.dump(batch, f, protocol=2)

    @staticmethod
    def cifar(data_dir: Path, n_per_batch: int = 4, n_test: int = 5, seed: int = 0) -> dict[str, tuple]:
        """All six batch files with random images; returns {file name: (pixels, labels)}."""
        rng = np.random.default_rng(seed)
        root = data_dir / "cifar-10-batches-py"
        written = {}
        for name, n in [*((f"data_batch_{i}", n_per_batch) for i in range(1, 6)), ("test_batch", n_test)]:
            pixels = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
            labels = rng.integers(0, 10, size=n).tolist()
            Published.cifar_batch(root / name, pixels, labels)
            written[name] = (pixels, labels)
        return written

    @staticmethod
    def pathfinder(
        data_dir: Path,
        side: int,
        metadata: dict[str, list[tuple[np.ndarray, int]]],
        level: str = "curv_contour_length_14",
    ) -> Path:
        """`pathfinder<side>/<level>/imgs/<b>/sample_<j>.png` and text `metadata/<b>.npy` rows
        `imgs/<b> sample_<j>.png <j> <label> <generator parameters...>` (as in the LRA release)."""
        level_dir = data_dir / f"pathfinder{side}" / level
        (level_dir / "metadata").mkdir(parents=True, exist_ok=True)
        for batch, images in metadata.items():
            (level_dir / "imgs" / batch).mkdir(parents=True, exist_ok=True)
            lines = []
            for j, (pixels, label) in enumerate(images):
                Image.fromarray(pixels).save(level_dir / "imgs" / batch / f"sample_{j}.png")
                lines.append(f"imgs/{batch} sample_{j}.png {j} {label} 1.8 14 4 2 0.5 1 1\n")
            (level_dir / "metadata" / f"{batch}.npy").write_text("".join(lines))
        return level_dir


@pytest.fixture
def published() -> type[Published]:
    return Published


@pytest.fixture
def lra_dir(tmp_path: Path) -> Path:
    """A data directory holding a tiny copy of every LRA task in its published layout."""
    rng = np.random.default_rng(1)
    Published.listops(tmp_path)
    Published.imdb(
        tmp_path,
        {
            "train": {
                "neg": [b"bad film", b"dull", b"boring plot"],
                "pos": [b"great", b"loved it", b"fine <br />"],
            },
            "test": {"neg": [b"awful"], "pos": [b"superb"]},
        },
    )
    Published.aan(
        tmp_path,
        {
            "train": [("1", b"doc one", b"doc two"), ("0", b"doc three", b"doc four")],
            "eval": [("0", b"doc five", b"doc six")],
            "test": [("1", b"doc seven", b"doc eight")],
        },
    )
    Published.cifar(tmp_path)
    for side in (32, 128):
        images = [(rng.integers(0, 256, (side, side), dtype=np.uint8), i % 2) for i in range(10)]
        Published.pathfinder(tmp_path, side, {"0": images})
    return tmp_path
