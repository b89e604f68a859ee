"""LRA text (IMDB files) and retrieval (AAN pairs): byte-level tokens, padding, labels, splits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ssm.data import DataFormatError, DataNotFoundError, get_task

REVIEWS = {
    "train": {
        "neg": [b"dull", b"a waste of time", b"bad <br /><br /> acting", b"meh", b"no", b"worst ever"],
        "pos": ["caf\u00e9 scene was great".encode(), b"loved it", b"fine", b"yes!", b"10/10", b"bravo"],
    },
    "test": {"neg": [b"awful", b"boring"], "pos": [b"superb", b"moving", b"wonderful"]},
}


def decode(x: torch.Tensor, length: int) -> bytes:
    """Bytes of a token sequence (id = byte + 1), checking that the padding is zeros."""
    assert x[length:].eq(0).all()
    return bytes((x[:length] - 1).tolist())


def documents(dataset) -> set[tuple[bytes, int]]:
    return {
        (decode(x, int(n)), int(y)) for x, y, n in zip(dataset.x, dataset.y, dataset.lengths, strict=True)
    }


def labelled(split: str) -> set[tuple[bytes, int]]:
    return {(text, 0) for text in REVIEWS[split]["neg"]} | {(text, 1) for text in REVIEWS[split]["pos"]}


def test_text_reads_imdb_as_bytes(published, tmp_path: Path):
    published.imdb(tmp_path, REVIEWS)
    task = get_task("text", data_dir=tmp_path)
    assert (task.kind, task.n_classes, task.d_input, task.seq_len) == ("classification", 2, 257, 4096)
    assert (task.input_type, task.pooling, task.paired) == ("tokens", "mean", False)
    assert task.train.x.shape == (len(task.train), 4096) and task.train.x.dtype == torch.int64
    # 12 training reviews: int(12 * 0.9) = 10 stay in train, 2 go to val; test is aclImdb/test.
    assert (len(task.train), len(task.val), len(task.test)) == (10, 2, 5)
    train, val = documents(task.train), documents(task.val)
    assert not train & val and train | val == labelled("train")  # labels: neg 0, pos 1
    assert documents(task.test) == labelled("test")
    # Non-ASCII text is read byte by byte: UTF-8 "é" is two tokens.
    lengths = {text: len(text) for text, _ in train | val}
    cafe = "caf\u00e9 scene was great".encode()
    assert lengths[cafe] == 21 == len("cafe scene was great") + 1


def test_text_validation_split_ignores_the_seed(published, tmp_path: Path):
    published.imdb(tmp_path, REVIEWS)
    a = get_task("text", data_dir=tmp_path, max_len=32, seed=0)
    b = get_task("text", data_dir=tmp_path, max_len=32, seed=1)
    assert torch.equal(a.val.x, b.val.x)
    c = get_task("text", data_dir=tmp_path, max_len=32, val_fraction=0.5)
    assert (len(c.train), len(c.val)) == (6, 6)


def test_text_truncates_to_max_len(published, tmp_path: Path):
    published.imdb(tmp_path, REVIEWS)
    task = get_task("text", data_dir=tmp_path, max_len=4)
    assert task.seq_len == 4 and task.train.x.shape[1] == 4
    assert task.train.lengths.max().item() == 4 and task.train.lengths.min().item() == 2  # "no"


def test_text_errors(published, tmp_path: Path):
    with pytest.raises(DataNotFoundError) as error:
        get_task("text", data_dir=tmp_path)
    assert error.value.path == tmp_path / "aclImdb" / "train" / "neg"
    assert "aclImdb_v1.tar.gz" in str(error.value)
    published.imdb(tmp_path, REVIEWS)
    empty = tmp_path / "aclImdb" / "test" / "pos" / "99_9.txt"
    empty.write_bytes(b"")
    with pytest.raises(DataFormatError, match="empty document") as error:
        get_task("text", data_dir=tmp_path)
    assert str(empty) in str(error.value)
    task = get_task("text", data_dir=tmp_path, skip_bad=True)
    assert task.metadata["skipped"] == 1 and len(task.test) == 5


AAN = {
    "train": [
        ("1", b"first doc", b"second doc"),
        ("0.0", b"third", "fourth \u00fc".encode()),
        ("1.0", b"x", b"y"),
    ],
    "eval": [("0", b"val doc a", b"val doc b")],
    "test": [("1", b"test a", b"test b"), ("0", b"test c", b"test d")],
}


def test_retrieval_reads_aan_pairs(published, tmp_path: Path):
    published.aan(tmp_path, AAN)
    task = get_task("retrieval", data_dir=tmp_path, max_len=16)
    assert task.paired and (task.n_classes, task.d_input, task.seq_len) == (2, 257, 16)
    for split, file_split in (("train", "train"), ("val", "eval"), ("test", "test")):
        dataset = task.split(split)
        assert dataset.x.shape == (len(AAN[file_split]), 2, 16)
        assert dataset.lengths.shape == (len(AAN[file_split]), 2)
        for i, (label, text1, text2) in enumerate(AAN[file_split]):
            assert dataset.y[i].item() == int(float(label))
            assert decode(dataset.x[i, 0], int(dataset.lengths[i, 0])) == text1
            assert decode(dataset.x[i, 1], int(dataset.lengths[i, 1])) == text2


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"1\tid\tid\tonly four", "expected 5 tab-separated columns"),
        (b"2\tid\tid\ta\tb", "label must be 0 or 1"),
        (b"1\tid\tid\t\tb", "empty document"),
    ],
)
def test_retrieval_corrupt_rows_name_file_and_line(published, tmp_path: Path, line: bytes, message: str):
    published.aan(tmp_path, AAN)
    path = tmp_path / "tsv_data" / "new_aan_pairs.test.tsv"
    path.write_bytes(path.read_bytes() + line + b"\n")  # line 3
    with pytest.raises(DataFormatError, match=message) as error:
        get_task("retrieval", data_dir=tmp_path)
    assert f"{path}, line 3" in str(error.value)
    task = get_task("retrieval", data_dir=tmp_path, skip_bad=True)
    assert task.metadata["skipped"] == 1 and len(task.test) == 2


def test_retrieval_missing_file(published, tmp_path: Path):
    published.aan(tmp_path, AAN)
    (tmp_path / "tsv_data" / "new_aan_pairs.eval.tsv").unlink()
    with pytest.raises(DataNotFoundError) as error:
        get_task("retrieval", data_dir=tmp_path)
    assert error.value.path == tmp_path / "tsv_data" / "new_aan_pairs.eval.tsv"
    assert "lra_release" in str(error.value)
