import pickle
import re

import numpy as np
import pytest
import torch

from selfsup.data import DataError
from selfsup.data.cifar import is_cifar_dir, load_cifar


def test_cifar10_layout_and_pixels(cifar10_dir):
    folder, batches = cifar10_dir
    splits = load_cifar(folder)
    assert splits.name == "cifar10"
    assert splits.train.images.shape == (10, 3, 32, 32) and splits.test.images.shape == (3, 3, 32, 32)
    assert splits.train.images.dtype == torch.uint8 and splits.train.labels.dtype == torch.int64
    rows, labels = batches["data_batch_2"]
    first = splits.train.images[2].numpy()  # batch 2 starts after the 2 images of batch 1
    assert np.array_equal(first[0], rows[0, :1024].reshape(32, 32))  # R plane, row-major
    assert np.array_equal(first[2], rows[0, 2048:].reshape(32, 32))  # B plane
    expected = [label for name in [f"data_batch_{k}" for k in range(1, 6)] for label in batches[name][1]]
    assert splits.train.labels.tolist() == expected
    assert splits.test.labels.tolist() == batches["test_batch"][1]
    assert splits.train.classes[:3] == ["airplane", "automobile", "bird"] and len(splits.train.classes) == 10


def test_cifar100_fine_labels(cifar100_dir):
    splits = load_cifar(cifar100_dir)
    assert splits.name == "cifar100"
    assert splits.train.labels.tolist() == [0, 99, 5, 42] and splits.test.labels.tolist() == [7, 99]
    assert splits.train.num_classes == 100 and splits.train.classes[99] == "class99"
    assert splits.test.images.shape == (2, 3, 32, 32)


def test_detects_extracted_archive_folder(cifar100_dir):
    parent = cifar100_dir.parent
    assert is_cifar_dir(parent) and len(load_cifar(parent).train) == 4


def test_is_cifar_dir_false_for_other_folders(tmp_path):
    (tmp_path / "cats").mkdir()
    (tmp_path / "train").mkdir()  # a folder, not the CIFAR-100 file
    assert not is_cifar_dir(tmp_path)
    assert not is_cifar_dir(tmp_path / "missing")


def test_missing_file_lists_expected(cifar10_dir):
    folder, _ = cifar10_dir
    (folder / "data_batch_4").unlink()
    (folder / "batches.meta").unlink()
    with pytest.raises(DataError) as info:
        load_cifar(folder)
    message = str(info.value)
    assert str(folder) in message and "data_batch_4, batches.meta" in message
    assert "test_batch" in message and "CIFAR-100" in message


def test_corrupt_pickle_names_file(cifar10_dir):
    folder, _ = cifar10_dir
    bad = folder / "data_batch_3"
    bad.write_bytes(bad.read_bytes()[:50])
    with pytest.raises(DataError) as info:
        load_cifar(folder)
    assert str(bad) in str(info.value)


def test_wrong_data_shape(cifar10_dir):
    folder, _ = cifar10_dir
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((3, 100), np.uint8), b"labels": [0, 1, 2]}, f)
    with pytest.raises(DataError, match=r"test_batch.*\(3, 100\)"):
        load_cifar(folder)


def test_label_out_of_range(cifar100_dir):
    with open(cifar100_dir / "test", "wb") as f:
        pickle.dump({b"data": np.zeros((1, 3072), np.uint8), b"fine_labels": [100]}, f)
    with pytest.raises(DataError, match="100 classes"):
        load_cifar(cifar100_dir)


class _Payload:
    """An object whose unpickling creates `marker`: what a batch carrying code would run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_a_batch_carrying_code_is_refused_without_running_it(cifar10_dir, tmp_path, protocol):
    folder, _ = cifar10_dir
    marker = tmp_path / "ran"
    batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1], b"x": _Payload(marker)}
    pickle.loads(pickle.dumps(batch, protocol)).pop(b"x").close()  # the payload is live: plain pickle runs it
    assert marker.exists()
    marker.unlink()
    (folder / "data_batch_2").write_bytes(pickle.dumps(batch, protocol))
    with pytest.raises(DataError) as info:
        load_cifar(folder)
    message = str(info.value)
    assert not marker.exists()
    assert "\n" not in message and str(folder / "data_batch_2") in message
    assert re.search(r"'(builtins|io)\.open'", message)  # protocol 2 spells it as Python 2 did


def test_a_batch_that_would_alter_an_admitted_function_is_refused(cifar10_dir):
    folder, _ = cifar10_dir
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]  # numpy's _frombuffer, admitted for protocol-5 arrays
    before = frombuffer.__defaults__
    # BUILD on it with the slot state {"__defaults__": (7,)}: a setattr on numpy's own function
    attack = (b"\x80\x02c" + frombuffer.__module__.encode() + b"\n_frombuffer\n"
              + b"N}(X\x0c\x00\x00\x00__defaults__K\x07\x85u\x86b.")
    (folder / "test_batch").write_bytes(attack)
    try:
        with pytest.raises(DataError, match="test_batch is not a readable CIFAR pickle"):
            load_cifar(folder)
        assert frombuffer.__defaults__ == before
    finally:
        frombuffer.__defaults__ = before


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_batches_pickled_again_by_python3_still_load(cifar10_dir, protocol):
    folder, batches = cifar10_dir
    rows, labels = batches["test_batch"]
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": rows, b"labels": np.array(labels)}, protocol))
    test = load_cifar(folder).test
    assert test.labels.tolist() == labels and np.array_equal(test.images.numpy().reshape(3, -1), rows)


@pytest.mark.parametrize("value, problem", [([[0] * 3072] * 2, "not a numpy array"), ("ab", "not a list")])
def test_batch_values_of_other_types_are_refused(cifar10_dir, value, problem):
    folder, _ = cifar10_dir
    batch = {b"data": value, b"labels": [0, 1]} if problem != "not a list" else {
        b"data": np.zeros((2, 3072), np.uint8), b"labels": value}
    (folder / "test_batch").write_bytes(pickle.dumps(batch))
    with pytest.raises(DataError, match=f"test_batch.*{problem}"):
        load_cifar(folder)


def test_numpy_globals_are_admitted_only_as_numpy_pickles_use_them(cifar10_dir, tmp_path, py2_pickle):
    folder, _ = cifar10_dir
    path = folder / "test_batch"
    # numpy.ndarray called itself: an uninitialised array of any shape the file names (here 2 x 3072)
    path.write_bytes(b"\x80\x02}(U\x04datacnumpy\nndarray\n(K\x02M\x00\x0c\x86U\x02u1\x86RU\x06labels](K\x00K\x01eu.")
    with pytest.raises(DataError, match="test_batch is not a readable CIFAR pickle"):
        load_cifar(folder)
    # a uint8 dtype whose pickled flags claim it holds Python objects (numpy's __setstate__ takes them)
    py2_pickle(tmp_path / "batch", {b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, 1, 2]})
    honest = (tmp_path / "batch").read_bytes()
    assert honest.count(b"K\x00tb\x89") == 1  # the dtype state's flags 0, then BUILD and is_fortran False
    path.write_bytes(honest.replace(b"K\x00tb\x89", b"K\x01tb\x89"))
    with pytest.raises(DataError, match="test_batch is not a readable CIFAR pickle"):
        load_cifar(folder)
    path.write_bytes(honest)
    assert load_cifar(folder).test.labels.tolist() == [0, 1, 2]
    # an array of Python objects
    path.write_bytes(pickle.dumps({b"data": np.array([None] * 3072 * 3, dtype=object).reshape(3, -1),
                                   b"labels": [0, 1, 2]}))
    with pytest.raises(DataError, match="test_batch is not a readable CIFAR pickle.*raw bytes"):
        load_cifar(folder)


def test_pretrain_on_a_folder_carrying_code_stops_with_one_line(cifar10_dir, tmp_path, capsys):
    from selfsup.cli import main

    folder, _ = cifar10_dir
    marker = tmp_path / "ran"
    batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1], b"x": _Payload(marker)}
    (folder / "data_batch_1").write_bytes(pickle.dumps(batch))
    assert main(["pretrain", "--data", str(folder), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert not marker.exists() and err.count("\n") == 1 and "Traceback" not in err
    assert str(folder / "data_batch_1") in err and "refused unread" in err
