"""Data: the built-in glyph set, folder checks, archives, transforms and loaders."""
from __future__ import annotations

import io
import logging
import os
import re
import shutil
import tarfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from pss import data as D
from pss.config import DataConfig
from pss.data import build_datasets, build_loader, check_data, extract_archive
from pss.errors import ConfigError, DataError

MEAN = torch.tensor(D.IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(D.IMAGENET_STD).view(1, 3, 1, 1)


def _patch_grid(x: torch.Tensor, p: int = 4) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, H/p, p, W/p, p)."""
    n, c, h, w = x.shape
    return x.view(n, c, h // p, p, w // p, p)


# ---------------------------------------------------------------------------------- built-in set


def test_glyph_set_is_deterministic_in_seed_and_split():
    a, ya = D.make_glyph_images(60, 10, seed=3)
    b, yb = D.make_glyph_images(60, 10, seed=3)
    c, _ = D.make_glyph_images(60, 10, seed=4)
    v, _ = D.make_glyph_images(60, 10, seed=3, split="val")
    assert torch.equal(a, b) and torch.equal(ya, yb)
    assert not torch.equal(a, c)
    assert not torch.equal(a, v)  # train and val are different images
    assert a.dtype == torch.uint8 and a.shape == (60, 3, 32, 32) and ya.dtype == torch.long


def test_glyph_patterns_symmetric_balanced_and_distinct():
    p = D.glyph_patterns(10)
    assert p.shape == (10, 6, 6) and p.dtype == torch.bool
    assert torch.equal(p, p.flip(-1))  # h-flip augmentation keeps the label
    assert (p.flatten(1).sum(1) == 18).all()  # same ink per class -> same mean colour
    flat = p.flatten(1)
    diff = (flat[:, None] != flat[None]).sum(-1)
    dist = torch.minimum(diff, 36 - diff) + 100 * torch.eye(10, dtype=torch.long)  # Invert augmentation flips polarity
    assert dist.min() >= 8


def test_builtin_datasets_shapes_balance_and_names():
    cfg = DataConfig(builtin_num_train=100, builtin_num_val=30, in_memory=True)
    train, val, names = build_datasets(cfg)
    assert names == [f"glyph{i}" for i in range(10)]
    assert train.images.shape == (100, 3, 32, 32) and train.images.dtype == torch.uint8
    assert torch.bincount(train.targets, minlength=10).tolist() == [10] * 10
    assert torch.bincount(val.targets, minlength=10).tolist() == [3] * 10
    report = check_data(cfg)
    assert report.source == "builtin" and report.num_train == 100 and report.num_val == 30


def test_class_evidence_sits_in_a_minority_of_high_contrast_patches():
    x, _, mask = D.make_glyph_images(1000, 10, seed=0, return_mask=True)
    touched = _patch_grid(mask[:, None]).any(5).any(3).flatten(1)  # (N, 64) patches with glyph pixels
    frac = touched.float().mean(1)
    assert 0.10 <= frac.mean() <= 0.25
    assert frac.min() >= 4 / 64 and frac.max() <= 0.40
    # Glyph patches are high contrast, background patches are not: clean separation by pixel range.
    grid = _patch_grid(x.float())
    contrast = (grid.amax((3, 5)) - grid.amin((3, 5))).amax(1).flatten(1)  # per-channel range, (N, 64)
    assert torch.quantile(contrast[~touched], 0.99) * 1.5 < torch.quantile(contrast[touched], 0.01)
    # So top-k by L1 norm of a random linear patch embedding (what magnitude selection does at
    # initialisation) keeps mostly glyph patches; random choice would keep ~frac of them.
    emb = torch.randn(48, 64, generator=torch.Generator().manual_seed(0))
    tokens = ((x.float() / 255 - MEAN) / STD).view(-1, 3, 8, 4, 8, 4).permute(0, 2, 4, 1, 3, 5).reshape(-1, 64, 48)
    score = (tokens @ emb).abs().sum(-1)
    k = touched.sum(1, keepdim=True)
    kept = score.argsort(1, descending=True).argsort(1) < k
    recall = (kept & touched).sum(1).float() / k.squeeze(1)
    assert recall.mean() > 0.85


def test_global_colour_statistics_do_not_reveal_the_class():
    x, y = D.make_glyph_images(1000, 10, seed=0)
    xv, yv = D.make_glyph_images(500, 10, seed=0, split="val")
    # Per-class mean colour is within sampling noise of the overall mean (images vary by ~10 levels
    # each; 100 per class -> ~1 level), tiny next to the >= 160-level glyph contrast.
    colour = x.float().mean((2, 3))
    per_class = torch.stack([colour[y == c].mean(0) for c in range(10)])
    assert (per_class - colour.mean(0)).abs().max() < 5
    # A nearest-centroid classifier on mean and std colour is at chance (10 %) ...
    feats = lambda im: torch.cat([im.float().mean((2, 3)), im.float().std((2, 3))], 1)  # noqa: E731
    ft, fv = feats(x), feats(xv)
    mu, sd = ft.mean(0), ft.std(0)
    centroids = torch.stack([ft[y == c].mean(0) for c in range(10)])
    acc_colour = (torch.cdist((fv - mu) / sd, (centroids - mu) / sd).argmin(1) == yv).float().mean()
    assert acc_colour < 0.2
    # ... while matching the glyph shapes solves it: the label is in the shapes.
    templates = (D.glyph_patterns(10).float() * 2 - 1)[:, None]
    response = F.conv2d(xv.float().mean(1, keepdim=True), templates).abs().amax((2, 3))
    assert (response.argmax(1) == yv).float().mean() > 0.95


def test_builtin_upscales_to_larger_img_size_and_refuses_smaller():
    train, _, _ = build_datasets(DataConfig(builtin_num_train=10, builtin_num_val=10, img_size=64, in_memory=True))
    assert train.images.shape == (10, 3, 64, 64)
    with pytest.raises(ConfigError, match="img_size >= 32"):
        DataConfig(img_size=16)


# ------------------------------------------------------------------------------------- folders


def test_folder_round_trip(tiny_image_folder):
    cfg = DataConfig(path=str(tiny_image_folder), in_memory=True, num_workers=0)
    report = check_data(cfg)
    assert report.classes == ["glyph0", "glyph1", "glyph2"]
    assert report.train_counts == {"glyph0": 4, "glyph1": 4, "glyph2": 4} and report.num_val == 6
    assert report.corrupt == [] and report.scanned == 18
    train, val, names = build_datasets(cfg, report=report)
    assert names == report.classes and len(train) == 12 and len(val) == 6
    # PNG is lossless and 32 px needs no resize: the decoded tensors are the generated ones,
    # in ImageFolder order (by class, then file name).
    images, labels = D.make_glyph_images(12, 3, seed=0)
    order = torch.sort(labels, stable=True).indices
    assert torch.equal(train.images, images[order]) and torch.equal(train.targets, labels[order])


def test_folder_per_image_transforms(tiny_image_folder):
    cfg = DataConfig(path=str(tiny_image_folder), num_workers=0, re_prob=0.25, auto_augment="rand-m9-mstd0.5-inc1")
    train, val, _ = build_datasets(cfg)
    images, labels = D.make_glyph_images(6, 3, seed=0, split="val")
    first = torch.sort(labels, stable=True).indices[0]
    x, y = val[0]
    # Eval at 32 px is just to-tensor + normalise.
    assert torch.allclose(x, ((images[first : first + 1].float() / 255 - MEAN) / STD)[0], atol=1e-5)
    assert y == 0
    xt, _ = train[0]
    assert xt.shape == (3, 32, 32) and xt.dtype == torch.float32
    loader = build_loader(train, 4, train=True, cfg=cfg)
    xb, yb = next(iter(loader))
    assert xb.shape == (4, 3, 32, 32) and yb.dtype == torch.long and len(loader) == 3


def test_missing_path_is_a_helpful_error(tmp_path):
    with pytest.raises(DataError, match=r"does not exist: set data.path .*null for the built-in"):
        check_data(DataConfig(path=str(tmp_path / "nope")))


def test_one_evaluation_split_rule_for_every_source(tiny_image_folder, caplog):
    """data.val_split where the data has it, else the first of validation / val / valid / test it has, logged:
    the CIFAR recipes (val_split: test) read a folder holding val/, as they read a Hugging Face copy."""
    caplog.set_level(logging.INFO, logger="pss.data")
    report = check_data(DataConfig(path=str(tiny_image_folder), val_split="test"))
    assert report.splits == ("train", "val") and report.num_val == 6
    assert "has no 'test' split: evaluating on 'val', the first of validation / val / valid / test" in caplog.text
    train, val, _ = build_datasets(DataConfig(path=str(tiny_image_folder), val_split="test"), report=report)
    assert Path(val.root).name == "val" and len(val) == 6
    (tiny_image_folder / "val").rename(tiny_image_folder / "test")
    assert check_data(DataConfig(path=str(tiny_image_folder))).splits == ("train", "test")
    (tiny_image_folder / "test").rename(tiny_image_folder / "holdout")  # no evaluation split by any of the names
    with pytest.raises(DataError, match=r"split folder .*val does not exist; folders present: holdout, train: set "
                                        r"data.val_split to the name of your val folder"):
        check_data(DataConfig(path=str(tiny_image_folder)))


def test_missing_train_split_suggests_the_folder_that_is_there(tiny_image_folder):
    (tiny_image_folder / "train").rename(tiny_image_folder / "training")
    with pytest.raises(DataError, match=r"train does not exist; folders present: training, val: set data.train_split: "
                                        r"training"):
        check_data(DataConfig(path=str(tiny_image_folder)))


def test_no_class_folders(tmp_path):
    for split in ("train", "val"):
        (tmp_path / split).mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / split / "a.png")  # images directly in the split
    msg = r"no class folders in .*train: expected train/<class>/\*\.jpg .*data.train_split"
    with pytest.raises(DataError, match=msg):
        check_data(DataConfig(path=str(tmp_path)))


def test_class_folder_without_images(tiny_image_folder):
    (tiny_image_folder / "train" / "glyph3").mkdir()
    (tiny_image_folder / "train" / "glyph3" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match=r"no images: .*glyph3 .*add images or remove"):
        check_data(DataConfig(path=str(tiny_image_folder)))


def test_val_classes_must_match_train(tiny_image_folder):
    (tiny_image_folder / "val" / "glyph2").rename(tiny_image_folder / "val" / "other")
    with pytest.raises(DataError, match=r"only in train: \['glyph2'\]; only in val: \['other'\]"):
        check_data(DataConfig(path=str(tiny_image_folder)))


def test_corrupt_image_skipped_or_fatal(tiny_image_folder):
    bad = tiny_image_folder / "train" / "glyph1" / "x.jpg"
    bad.write_bytes(b"\x00garbage" * 20)
    report = check_data(DataConfig(path=str(tiny_image_folder)))
    assert report.corrupt == [str(bad)] and report.train_counts["glyph1"] == 4 and report.num_train == 12
    train, _, _ = build_datasets(DataConfig(path=str(tiny_image_folder), num_workers=0), report=report)
    assert str(bad) not in [p for p, _ in train.samples] and len(train) == 12
    with pytest.raises(DataError, match=r"1 unreadable image\(s\): .*x\.jpg .*data.on_corrupt: skip"):
        check_data(DataConfig(path=str(tiny_image_folder), on_corrupt="fail"))


def test_corrupt_image_found_mid_epoch_never_crashes(tiny_image_folder):
    bad = tiny_image_folder / "train" / "glyph0" / "00000.png"  # first sample
    bad.write_bytes(b"not a png")
    cfg = DataConfig(path=str(tiny_image_folder), scan_images=False, num_workers=0)
    train, _, _ = build_datasets(cfg)
    assert train.samples[0][0] == str(bad)
    x, y = train[0]  # falls through to the next readable sample
    assert x.shape == (3, 32, 32) and y == 0
    train, _, _ = build_datasets(DataConfig(path=str(tiny_image_folder), scan_images=False, on_corrupt="fail"))
    with pytest.raises(DataError, match="cannot read image .*00000.png"):
        train[0]


def test_a_failing_augmentation_is_not_blamed_on_the_image(tiny_image_folder, caplog):
    """Only the decode is guarded: an error raised by the transform reaches the caller as it is, never
    logged as an unreadable image and replaced by the next one (which would quietly change the data)."""
    train, _, _ = build_datasets(DataConfig(path=str(tiny_image_folder), scan_images=False, num_workers=0))

    def broken(img):
        raise ValueError("augmentation broke")

    train.transform = broken
    with caplog.at_level(logging.WARNING, logger="pss.data"), pytest.raises(ValueError, match="augmentation broke"):
        train[0]
    assert "unreadable" not in caplog.text


@pytest.mark.parametrize("policy", ["rand-m10-n2-inc1", "augmix-m10-w2"])
def test_posterize_to_zero_bits_is_a_black_image_not_an_error(policy):
    """timm's posterize at the top magnitude keeps 0 bits (RandAugment with inc1; the DeiT recipe's
    magnitude noise reaches it), which recent Pillow refuses: pss's train transform gives the black image
    Pillow used to, at 224 px and on the small-image path alike."""
    from timm.data.auto_augment import AugmentOp

    from pss.data.datasets import timm_train_transform

    for size in (32, 224):
        transform = timm_train_transform(DataConfig(img_size=size, auto_augment=policy))
        ops = [op for t in transform.transforms for op in getattr(t, "ops", None) or []
               if isinstance(op, AugmentOp) and op.name.startswith("Posterize")]
        assert ops, f"no posterize operation in {policy}"
        op = ops[0]
        op.prob, op.magnitude_std = 1.0, 0.0
        img = Image.new("RGB", (size, size), (200, 120, 40))
        assert op.level_fn(op.magnitude, op.hparams) == (0,)  # the case: 0 bits kept
        out = op(img)
        assert out.size == img.size and out.getextrema() == ((0, 0),) * 3
        op.magnitude = 5  # 2 bits: timm's posterize as it is
        assert op(img).getextrema() == ((192, 192), (64, 64), (0, 0))


def test_large_sets_scan_only_a_sample(tiny_image_folder):
    report = check_data(DataConfig(path=str(tiny_image_folder), scan_max_files=10, scan_sample_size=5))
    assert report.sampled and report.scanned == 5 and report.num_train == 12


# ------------------------------------------------------------------------------------- archives


def _make_archive(src: Path, dest: Path) -> Path:
    with tarfile.open(dest, "w:gz") as tar:
        tar.add(src, arcname="tiny")  # wrapped in one top folder, like cifar10/train, cifar10/test
    return dest


def test_extract_archive_once_and_atomically(tiny_image_folder, tmp_path, monkeypatch):
    (tiny_image_folder / "val").rename(tiny_image_folder / "test")
    archive = _make_archive(tiny_image_folder, tmp_path / "tiny-png.tar.gz")
    cache = tmp_path / "cache"
    root = extract_archive(str(archive), str(cache))
    (key,) = [p.name for p in cache.iterdir() if not p.name.startswith(".")]
    assert key.startswith("tiny-png-") and Path(root) == cache / key / "tiny"  # a folder of this archive's own
    assert sorted(p.name for p in Path(root).iterdir()) == ["test", "train"]
    assert sorted(p.name for p in cache.iterdir()) == [f".{key}.lock", f".{key}.pss-extracted.json", key]

    def no_reextract(*a, **k):
        raise AssertionError("extracted twice")

    monkeypatch.setattr(tarfile, "open", no_reextract)
    assert extract_archive(str(archive), str(cache)) == root
    # A DataConfig path may point at the archive directly.
    report = check_data(DataConfig(path=str(archive), cache_dir=str(cache), val_split="test"))
    assert report.root == root and report.num_train == 12 and report.num_val == 6


def test_the_cache_serves_only_what_it_extracted_from_this_archive(tiny_image_folder, tmp_path):
    """Two archives with the same top folder, and a folder extracted by hand: each archive gets its own
    images, whatever else the cache holds (the cache once served the first archive's for the second)."""
    cache = tmp_path / "cache"
    good = _make_archive(tiny_image_folder, tmp_path / "good.tar.gz")
    with tarfile.open(good) as tar:  # extracted by hand: `tiny/` - never served, never touched
        tar.extractall(cache, filter="data")
    hand = sorted(p.name for p in (cache / "tiny" / "train").iterdir())
    good_root = Path(extract_archive(str(good), str(cache)))
    for f in (tiny_image_folder / "train").rglob("*.png"):
        f.unlink()
    (tiny_image_folder / "train" / "only").mkdir()
    Image.new("RGB", (8, 8)).save(tiny_image_folder / "train" / "only" / "x.png")
    other = _make_archive(tiny_image_folder, tmp_path / "other.tar.gz")  # also `tiny/` inside
    other_root = Path(extract_archive(str(other), str(cache)))
    assert other_root != good_root and other_root.name == good_root.name == "tiny"
    assert [p.relative_to(other_root).as_posix() for p in (other_root / "train").rglob("*.png")] == ["train/only/x.png"]
    assert len(list((good_root / "train").rglob("*.png"))) == 12  # the first archive's set, intact
    assert sorted(p.name for p in (cache / "tiny" / "train").iterdir()) == hand


def test_a_changed_or_half_marked_archive_is_extracted_again(tiny_image_folder, tmp_path):
    cache = tmp_path / "cache"
    archive = _make_archive(tiny_image_folder, tmp_path / "a.tar.gz")
    root = Path(extract_archive(str(archive), str(cache)))
    (root / "train" / "stray.txt").write_text("left by someone")
    os.utime(archive, (1, 1))  # a new archive in place of the old one (another mtime)
    assert Path(extract_archive(str(archive), str(cache))) == root and not (root / "train" / "stray.txt").exists()
    (root / "train" / "stray.txt").write_text("x")
    next(cache.glob(".*.pss-extracted.json")).write_text("{not json")  # a lost / damaged marker
    extract_archive(str(archive), str(cache))
    assert not (root / "train" / "stray.txt").exists()


def test_unsafe_archive_members_are_refused_as_unsafe(tmp_path):
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(DataError, match="refusing to extract .*plain files") as e:
        extract_archive(str(evil), str(tmp_path / "cache"))
    assert "download it again" not in str(e.value) and not (tmp_path / "escape.txt").exists()


def test_damaged_archive(tmp_path):
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataError, match="download it again"):
        extract_archive(str(bad), str(tmp_path / "cache"))
    assert not (tmp_path / "cache" / "bad").exists()


# ------------------------------------------------------------------------------------- loaders


@pytest.fixture
def mem_set():
    cfg = DataConfig(builtin_num_train=50, builtin_num_val=20, in_memory=True)
    train, val, _ = build_datasets(cfg)
    return cfg, train, val


def test_in_memory_eval_loader_shapes_and_normalisation(mem_set):
    cfg, _, val = mem_set
    loader = build_loader(val, 8, train=False, cfg=cfg)
    batches = list(loader)
    assert len(loader) == len(batches) == 3 and [len(b[1]) for b in batches] == [8, 8, 4]  # no drop_last for eval
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    assert x.dtype == torch.float32 and x.shape == (20, 3, 32, 32) and y.dtype == torch.long
    assert torch.allclose(x, (val.images.float() / 255 - MEAN) / STD, atol=1e-5)  # eval: in order, unaugmented
    assert torch.equal(y, val.targets)


def test_in_memory_augment_is_a_padded_crop_and_flip(mem_set):
    cfg, train, _ = mem_set
    loader = build_loader(train, 8, train=True, cfg=cfg)
    imgs = train.images[:8]
    out = loader.augment(imgs, torch.Generator().manual_seed(0))
    assert out.shape == imgs.shape and out.dtype == torch.uint8
    padded = F.pad(imgs, (4, 4, 4, 4))
    for i in range(8):  # each output is one of the 9*9*2 crops of its padded input
        crops = [c for oy in range(9) for ox in range(9) for c in (padded[i, :, oy : oy + 32, ox : ox + 32],)]
        crops += [c.flip(-1) for c in crops]
        assert any(torch.equal(out[i], c) for c in crops)
    flip_only = build_loader(train, 8, train=True, cfg=DataConfig(in_memory=True, crop_padding=0, hflip=1.0))
    assert torch.equal(flip_only.augment(imgs, torch.Generator()), imgs.flip(-1))


def test_random_erase_vectorised():
    x = torch.ones(64, 3, 32, 32)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(D.random_erase(x, 0.0, "const", 1, g), x)
    out = D.random_erase(x, 1.0, "const", 1, g)
    erased = (out == 0).all(1).float().mean((1, 2))  # fraction of each image erased, one rectangle
    assert (erased > 0.01).all() and (erased < 0.40).all()
    rows, cols = (out == 0).all(1).any(2), (out == 0).all(1).any(1)  # a rectangle: rows x cols
    assert torch.equal((out == 0).all(1), rows[:, :, None] & cols[:, None, :])
    half = (D.random_erase(x, 0.5, "pixel", 2, g) != 1).flatten(1).any(1).float().mean()
    assert 0.3 < half < 0.7


def test_random_erase_draws_noise_only_when_it_erases():
    x = torch.randn(16, 3, 32, 32)
    g0, g1 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    # Nothing erased: the input itself comes back, and no noise is drawn from the device's generator.
    state = torch.get_rng_state()
    for mode in ("pixel", "rand"):
        assert D.random_erase(x, 0.0, mode, 3, g0) is x
    assert torch.equal(torch.get_rng_state(), state)
    # The geometry draws do not depend on prob: g's stream (crop/flip of the next batch) is the same.
    D.random_erase(x, 1.0, "pixel", 3, g1)
    D.random_erase(x, 1.0, "rand", 3, g1)
    assert torch.equal(g0.get_state(), g1.get_state())
    # Every image erased once: exactly one (B, C, H, W) normal fill is drawn, and the erased pixels are it.
    torch.manual_seed(0)
    out = D.random_erase(x, 1.0, "pixel", 1, torch.Generator().manual_seed(4))
    after = torch.get_rng_state()
    torch.manual_seed(0)
    noise = torch.randn(16, 3, 32, 32)
    assert torch.equal(torch.get_rng_state(), after)
    erased = out != x
    assert torch.equal(erased, erased[:, :1].expand_as(erased))  # whole pixels: all channels or none
    mask = erased[:, 0]
    rows, cols = mask.any(2), mask.any(1)
    assert torch.equal(mask, rows[:, :, None] & cols[:, None, :])  # one rectangle per image
    frac = mask.float().mean((1, 2))
    assert (frac > 0.01).all() and (frac < 0.40).all()  # 2-33 % of the image, up to rounding
    assert torch.equal(out[erased], noise[erased]) and torch.equal(out[~erased], x[~erased])
    fill = out[erased]
    assert abs(fill.mean()) < 0.1 and abs(fill.std() - 1) < 0.1  # standard normal noise


def test_in_memory_order_reproducible_per_seed_and_epoch(mem_set):
    cfg, train, _ = mem_set

    def epoch(seed: int, e: int) -> list[torch.Tensor]:
        loader = build_loader(train, 16, train=True, cfg=cfg, seed=seed)
        loader.set_epoch(e)
        return [t for b in loader for t in b]

    a, b = epoch(0, 1), epoch(0, 1)
    assert len(a) == 2 * 3 and all(torch.equal(s, t) for s, t in zip(a, b))  # drop_last: 50 // 16 = 3
    assert not torch.equal(torch.cat(a[1::2]), torch.cat(epoch(0, 2)[1::2]))
    assert not torch.equal(torch.cat(a[1::2]), torch.cat(epoch(1, 1)[1::2]))


def test_sharding_covers_without_overlap(mem_set):
    cfg, train, val = mem_set
    # Eval: exact shards, no duplicates, even with an odd count.
    shards = [build_loader(val, 3, train=False, cfg=cfg, rank=r, world_size=3).sampler.indices() for r in range(3)]
    allidx = torch.cat(shards)
    assert sorted(allidx.tolist()) == list(range(20))
    # Train: padded to equal counts (ranks take the same number of steps); no overlap when divisible.
    shards = [build_loader(train, 5, train=True, cfg=cfg, rank=r, world_size=2, seed=7) for r in range(2)]
    for s in shards:
        s.set_epoch(3)
    idx = [s.sampler.indices() for s in shards]
    assert len(idx[0]) == len(idx[1]) == 25
    assert sorted(torch.cat(idx).tolist()) == list(range(50))
    targets = torch.cat([y for s in shards for _, y in s])
    assert torch.equal(targets.sort().values, train.targets.sort().values)


def test_folder_loader_order_and_set_epoch(tiny_image_folder):
    cfg = DataConfig(path=str(tiny_image_folder), num_workers=0)
    train, _, _ = build_datasets(cfg)

    def order(e: int) -> list[int]:
        loader = build_loader(train, 4, train=True, cfg=cfg, seed=1)
        loader.set_epoch(e)
        return [t for _, y in loader for t in y.tolist()]

    assert order(0) == order(0) and len(order(0)) == 12


def test_distributed_needs_initialised_process_group(mem_set):
    cfg, train, _ = mem_set
    with pytest.raises(ConfigError, match="torchrun"):
        build_loader(train, 4, train=True, cfg=cfg, distributed=True)
    with pytest.raises(ConfigError, match="lower the batch size"):
        build_loader(train, 64, train=True, cfg=cfg)


# ------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(on_corrupt="ignore"), "on_corrupt"),
        (dict(in_memory=True, auto_augment="rand-m9-mstd0.5-inc1"), "in_memory: false"),
        (dict(auto_augment="fancy"), "not a timm policy"),
        (dict(re_prob=1.5), "re_prob"),
        (dict(mean=(0.5, 0.5)), "3 values"),
        (dict(val_split=""), "val_split"),
    ],
)
def test_config_validation(kw, match):
    with pytest.raises(ConfigError, match=match):
        DataConfig(**kw)


def test_config_from_dict_and_back():
    from pss.config import build_config

    cfg = build_config(DataConfig, {"path": "/data/cifar", "val_split": "test", "mean": [0.5, 0.5, 0.5], "re_prob": 0.25},
                       "data")
    assert cfg.mean == (0.5, 0.5, 0.5) and cfg.val_split == "test"
    assert build_config(DataConfig, cfg.to_dict(), "data") == cfg
    with pytest.raises(ConfigError, match="unknown config key 'data.image_size' \\(did you mean 'img_size'"):
        build_config(DataConfig, {"image_size": 32}, "data")
    with pytest.raises(ConfigError, match="data.re_prob must be a number"):  # the coercion every config gets
        build_config(DataConfig, {"re_prob": "often"}, "data")


def test_class_balanced_subset(tiny_image_folder):
    full = check_data(DataConfig(path=str(tiny_image_folder)))
    sub = check_data(DataConfig(path=str(tiny_image_folder), max_train_per_class=2, max_val_per_class=1))
    assert sub.train_counts == {c: 2 for c in full.classes} and sub.val_counts == {c: 1 for c in full.classes}
    # the first files of each class, in sorted order: the same subset every time
    kept = {p for p, _ in sub.train_samples}
    for c in full.classes:
        files = sorted(p for p, i in full.train_samples if full.classes[i] == c)
        assert set(files[:2]) <= kept and not set(files[2:]) & kept
    with pytest.raises(ConfigError, match="max_train_per_class must be null"):
        DataConfig(path=str(tiny_image_folder), max_train_per_class=0)


def test_folder_links_that_loop_or_leave_the_dataset_are_skipped(tiny_image_folder, tmp_path, caplog):
    """A link back to its own class folder, and one to a folder outside the dataset: neither adds
    images (before: the loop repeated the class's images many times over)."""
    before = check_data(DataConfig(path=str(tiny_image_folder)))
    cls = tiny_image_folder / "train" / "glyph0"
    (cls / "loop").symlink_to(cls, target_is_directory=True)
    (cls / "up").symlink_to(tiny_image_folder / "train", target_is_directory=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(next(cls.glob("*.png")), outside / "extra.png")
    (cls / "away").symlink_to(outside, target_is_directory=True)
    after = check_data(DataConfig(path=str(tiny_image_folder)))
    assert after.train_counts == before.train_counts
    assert [p for p, _ in after.train_samples] == [p for p, _ in before.train_samples]
    assert "skipped 3 folder link(s)" in caplog.text


def test_missing_val_split_never_suggests_the_training_images(tiny_image_folder):
    shutil.rmtree(tiny_image_folder / "val")
    # a training split only: said as such, and never "set data.val_split: train"
    with pytest.raises(DataError, match=r"a training split only \(train/\) and no validation images: add a val/<class>/"):
        check_data(DataConfig(path=str(tiny_image_folder)))


def test_a_full_cache_disk_is_not_called_a_damaged_archive(tiny_image_folder, tmp_path, monkeypatch):
    """A full cache disk while extracting read "the archive is damaged or incomplete; download it again"."""
    import errno

    archive = _make_archive(tiny_image_folder, tmp_path / "tiny-png.tar.gz")

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tarfile.TarFile, "extractall", full)
    with pytest.raises(DataError, match=rf"into the cache folder {re.escape(str(tmp_path / 'cache'))}: no space left "
                                        r"\(.* archive; .*\); free space there or set data.cache_dir") as e:
        extract_archive(str(archive), str(tmp_path / "cache"))
    assert "damaged" not in str(e.value)
    assert not [p for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")]  # nothing half-extracted
