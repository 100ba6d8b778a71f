"""Hugging Face datasets as a data source (`pss.data.sources.hf`): built locally, nothing downloads."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

datasets = pytest.importorskip("datasets")  # the [hf] extra; part of [dev]
from PIL import Image  # noqa: E402

from pss.config import DataConfig  # noqa: E402
from pss.data import build_datasets, build_loader, check_data  # noqa: E402
from pss.data.sources.hf import is_hf_source  # noqa: E402
from pss.errors import DataError  # noqa: E402

CLASSES = ["ant", "bee", "cat"]


def make_split(n: int, seed: int, names=CLASSES, image_col="img", label_col="label", class_label=True):
    """n random 8x8 RGB images, labels interleaved 0, 1, 2, 0, ... (not class-major)."""
    rng = np.random.default_rng(seed)
    images = [Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)) for _ in range(n)]
    labels = [i % len(names) for i in range(n)]
    label_feat = datasets.ClassLabel(names=names) if class_label else datasets.Value("int64")
    feats = datasets.Features({image_col: datasets.Image(), label_col: label_feat})
    return datasets.Dataset.from_dict({image_col: images, label_col: labels}, features=feats)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A DatasetDict (train 12, test 6) saved with save_to_disk, and the same as parquet files."""
    root = tmp_path_factory.mktemp("hf")
    dd = datasets.DatasetDict({"train": make_split(12, 0), "test": make_split(6, 1)})
    dd.save_to_disk(str(root / "saved"))
    (root / "pq").mkdir()
    dd["train"].to_parquet(str(root / "pq" / "train.parquet"))
    dd["test"].to_parquet(str(root / "pq" / "test.parquet"))
    return root, dd


def cfg(path, **kw) -> DataConfig:
    return DataConfig(path=str(path), img_size=8, num_workers=0, **kw)


def pixels(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)


@pytest.mark.parametrize("form", ["saved", "hf:saved", "pq", "hf:pq"])
def test_local_forms_found_from_features(saved, form):
    root, dd = saved
    path = ("hf:" if form.startswith("hf:") else "") + str(root / form.removeprefix("hf:"))
    assert is_hf_source(path)
    report = check_data(cfg(path))  # val_split "val" is absent: the dataset's only eval split, "test", is used
    assert report.source == "hf" and report.classes == CLASSES and report.splits == ("train", "test")
    assert report.opened["image_column"] == "img"
    assert report.train_counts == {"ant": 4, "bee": 4, "cat": 4} and report.val_counts == {"ant": 2, "bee": 2, "cat": 2}
    # Class-major order, row order within a class (what a folder written in row order gives).
    assert report.train_samples == [(r, r % 3) for c in range(3) for r in range(12) if r % 3 == c]
    train, val, names = build_datasets(cfg(path, mean=(0, 0, 0), std=(1, 1, 1)))
    assert names == CLASSES and len(train) == 12 and len(val) == 6
    x, y = val[0]  # eval transform at native size: exactly the stored pixels / 255
    assert y == 0 and torch.allclose(x, pixels(dd["test"][0]["img"]).float() / 255, atol=1e-6)


def test_plain_folders_and_files_are_not_taken_for_hf(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    assert not is_hf_source(str(tmp_path)) and not is_hf_source(None) and not is_hf_source(str(tmp_path / "x.tar.gz"))


def test_folder_and_hub_forms_give_the_same_classes_and_images_for_a_seed(saved, tmp_path):
    """An ImageNet-style folder written from the dataset in row order and the dataset itself: the
    same class order, the same (augmented) batches for the same seed, in memory and per image."""
    root, dd = saved
    for split in ("train", "test"):
        counter = dict.fromkeys(CLASSES, 0)
        for row in dd[split]:
            name = CLASSES[row["label"]]
            (tmp_path / split / name).mkdir(parents=True, exist_ok=True)
            row["img"].save(tmp_path / split / name / f"{counter[name]:04d}.png")  # lossless
            counter[name] += 1
    for in_memory in (True, False):
        batches = []
        for path in (tmp_path, f"hf:{root / 'saved'}"):
            c = cfg(path, val_split="test", in_memory=in_memory, re_prob=0.25)
            train, val, names = build_datasets(c)
            assert names == CLASSES
            torch.manual_seed(0), random.seed(0)  # per-image transforms draw from torch's and Python's generators
            loaders = [build_loader(train, 4, True, c, seed=3), build_loader(val, 4, False, c, seed=3)]
            batches.append([(x.clone(), y.clone()) for loader in loaders for x, y in loader])
        assert len(batches[0]) == len(batches[1]) == 3 + 2
        for i, ((xa, ya), (xb, yb)) in enumerate(zip(*batches)):
            assert torch.equal(ya, yb), (in_memory, i)
            assert torch.equal(xa, xb), (in_memory, i, (xa - xb).abs().max())


def test_in_memory_decodes_in_workers_and_caps_per_class(saved):
    root, dd = saved
    train, val, _ = build_datasets(DataConfig(path=str(root / "saved"), img_size=8, num_workers=2, in_memory=True,
                                              max_train_per_class=2))
    assert train.images.shape == (6, 3, 8, 8) and train.targets.tolist() == [0, 0, 1, 1, 2, 2]
    assert torch.equal(train.images[2], pixels(dd["train"][1]["img"]))  # class 1's first row is row 1
    assert val.images.shape == (6, 3, 8, 8)


def test_label_column_without_classlabel_and_named_columns(tmp_path):
    dd = datasets.DatasetDict({"train": make_split(6, 0, image_col="picture", label_col="y", class_label=False),
                               "validation": make_split(3, 1, image_col="picture", label_col="y", class_label=False)})
    dd.save_to_disk(str(tmp_path / "d"))
    with pytest.raises(DataError, match=r"no ClassLabel column .*set data.hf_label_column"):
        check_data(cfg(tmp_path / "d"))
    report = check_data(cfg(tmp_path / "d", hf_label_column="y"))
    assert report.classes == ["0", "1", "2"] and report.splits == ("train", "validation")
    assert report.opened["image_column"] == "picture"


@pytest.mark.parametrize("change, message", [
    ({"hf_image_column": "photo"}, r"has no column 'photo' \(columns: img \(Image\), label \(ClassLabel\)\): "
                                   r"set data.hf_image_column"),
    ({"hf_label_column": "img"}, r"column 'img' of .* holds Image, not class labels: set data.hf_label_column"),
    ({"train_split": "training"}, r"has no split 'training' \(splits: train, test\): set data.train_split"),
])
def test_bad_settings_one_line(saved, change, message):
    root, _ = saved
    with pytest.raises(DataError) as e:
        check_data(cfg(root / "saved", **change))
    assert "\n" not in str(e.value) and e.match(message)


def test_empty_split_classes_differ_and_unlabelled_rows(tmp_path, monkeypatch):
    import pss.data.sources.hf

    empty = {"train": make_split(6, 0), "test": make_split(3, 0).select([])}  # datasets' loaders refuse to write one
    with monkeypatch.context() as m:
        m.setattr(pss.data.sources.hf, "open_hf", lambda spec: ("mem", empty))
        with pytest.raises(DataError, match="split 'test' of mem is empty: choose another with data.val_split"):
            check_data(cfg("hf:anything"))
    datasets.DatasetDict({"train": make_split(6, 0), "test": make_split(3, 1, names=["ant", "bee", "dog"])}
                         ).save_to_disk(str(tmp_path / "d"))
    with pytest.raises(DataError, match=r"train and val classes differ .*only in train: \['cat'\]; only in test: \['dog'\]"):
        check_data(cfg(tmp_path / "d"))
    test = make_split(3, 1).cast_column("label", datasets.Value("int64")).map(lambda r: {"label": -1})
    test = test.cast_column("label", datasets.ClassLabel(names=CLASSES))
    datasets.DatasetDict({"train": make_split(6, 0), "test": test}).save_to_disk(str(tmp_path / "u"))
    with pytest.raises(DataError, match=r"split 'test' of .* has 3 row\(s\) without a valid label"):
        check_data(cfg(tmp_path / "u"))


def test_unreadable_images_skipped_or_refused(tmp_path):
    train = make_split(6, 0).cast_column("img", datasets.Image(decode=False))
    rows = train.to_list()
    rows[4]["img"] = {"bytes": b"not an image", "path": None}
    bad = datasets.Dataset.from_list(rows, features=train.features).cast_column("img", datasets.Image())
    datasets.DatasetDict({"train": bad, "test": make_split(3, 1)}).save_to_disk(str(tmp_path / "c"))
    report = check_data(cfg(tmp_path / "c"))
    assert len(report.corrupt) == 1 and "train[4]" in report.corrupt[0] and report.train_counts["bee"] == 1
    assert (4, 1) not in report.train_samples
    with pytest.raises(DataError, match=r"1 unreadable image\(s\): .* train\[4\]"):
        check_data(cfg(tmp_path / "c", on_corrupt="fail"))
    # Not scanned: found mid-epoch, replaced by the next readable row, or refused in one line.
    train, _, _ = build_datasets(cfg(tmp_path / "c", scan_images=False, crop_padding=0, hflip=0.0))  # no randomness
    position = next(i for i, (row, _) in enumerate(train.samples) if row == 4)
    assert train[position][1] == train[position + 1][1] and torch.equal(train[position][0], train[position + 1][0])
    train, _, _ = build_datasets(cfg(tmp_path / "c", scan_images=False, on_corrupt="fail"))
    with pytest.raises(DataError, match=r"cannot read image .* train row 4 \(.*\): fix the dataset, or set data.on_corrupt"):
        train[position]


def test_evaluating_on_the_training_split_is_one_rule_for_every_source(saved, tiny_image_folder):
    """`data.val_split=train` on a folder dataset evaluated on the training images (Hugging Face refused it)."""
    from pss.config import load_config
    from pss.errors import ConfigError

    root, _ = saved
    for path in (root / "saved", tiny_image_folder):
        with pytest.raises(ConfigError, match=r"data.train_split and data.val_split are both 'train': evaluating on "
                                              r"the training images"):
            load_config(None, [f"data.path={path}", "data.val_split=train"])


def _unreadable(split, rows):
    table = split.cast_column("img", datasets.Image(decode=False))
    out = table.to_list()
    for r in rows:
        out[r]["img"] = {"bytes": b"not an image", "path": None}
    return datasets.Dataset.from_list(out, features=table.features).cast_column("img", datasets.Image())


@pytest.mark.parametrize("broken", ["train", "test"])
def test_a_split_with_every_image_unreadable_says_so(tmp_path, broken):
    """An unreadable evaluation split trained and reported acc1 nan; an unreadable training split said
    "batch_size 8 is larger than this rank's 0 images"."""
    splits = {"train": make_split(6, 0), "test": make_split(3, 1)}
    splits[broken] = _unreadable(splits[broken], range(len(splits[broken])))
    datasets.DatasetDict(splits).save_to_disk(str(tmp_path / "d"))
    n = len(splits[broken])
    with pytest.raises(DataError, match=rf"every image of class\(es\) ant, bee, cat in split '{broken}' of .* is "
                                        rf"unreadable \({n} of {n} rows left out\); fix the dataset"):
        check_data(cfg(tmp_path / "d"))
    splits[broken] = _unreadable(make_split(6, 2), [0])  # one bad row of two per class: left out, as before
    datasets.DatasetDict(splits).save_to_disk(str(tmp_path / "e"))
    assert len(check_data(cfg(tmp_path / "e")).corrupt) == 1


def test_a_text_column_as_the_image_column_is_named(tmp_path):
    table = make_split(6, 0).add_column("caption", [f"a photo of {i}" for i in range(6)])
    test = make_split(3, 1).add_column("caption", ["x", "y", "z"])
    datasets.DatasetDict({"train": table, "test": test}).save_to_disk(str(tmp_path / "d"))
    with pytest.raises(DataError, match=r"in split 'train' of .* is unreadable \(6 of 6 rows left out\); column "
                                        r"'caption' is no datasets.Image column: is data.hf_image_column the image column\?"):
        check_data(cfg(tmp_path / "d", hf_image_column="caption"))


def hub_failing(kind: type, message: str):
    """A stand-in for datasets.load_dataset that fails as the real one does (message with {name})."""
    def load_dataset(name, config=None):
        raise kind(message.format(name=name))
    return load_dataset


def test_hub_offline_is_one_line_naming_the_fixes(monkeypatch):
    """What datasets raises offline (HF_DATASETS_OFFLINE=1, or no network) for a set not in its cache;
    the real thing runs in tests/integration/test_data_sources.py."""
    monkeypatch.setattr(datasets, "load_dataset",
                        hub_failing(ConnectionError, "Couldn't reach '{name}' on the Hub (OfflineModeIsEnabled)"))
    with pytest.raises(DataError) as e:
        check_data(DataConfig(path="hf:uoft-cs/cifar10"))
    line = str(e.value)
    assert line.startswith("cannot reach uoft-cs/cifar10 on the Hugging Face hub") and "\n" not in line
    for hint in ("HF_HOME", "HF_DATASETS_OFFLINE=1", "--data hf:/path/to/cifar10", "ImageNet-style folder"):
        assert hint in line


def test_gated_and_unknown_hub_names(monkeypatch):
    from datasets.exceptions import DatasetNotFoundError

    monkeypatch.setattr(datasets, "load_dataset", hub_failing(
        DatasetNotFoundError, "Dataset '{name}' is a gated dataset on the Hub. You must be authenticated to access it."))
    with pytest.raises(DataError, match=r"ILSVRC/imagenet-1k is a gated dataset .*`hf auth login`.*huggingface-cli login"):
        check_data(DataConfig(path="hf:ILSVRC/imagenet-1k"))
    monkeypatch.setattr(datasets, "load_dataset", hub_failing(
        DatasetNotFoundError, "Dataset '{name}' doesn't exist on the Hub or cannot be accessed."))
    with pytest.raises(DataError, match=r"no dataset nobody/nothing on the Hugging Face hub .*check the name"):
        check_data(DataConfig(path="hf:nobody/nothing:cfg"))
    with pytest.raises(DataError, match="names no dataset"):
        check_data(DataConfig(path="hf:"))
    with pytest.raises(DataError, match="does not exist"):
        check_data(DataConfig(path="hf:./no/such/folder"))
