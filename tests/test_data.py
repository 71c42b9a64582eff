from pathlib import Path

import pytest
import torch
from PIL import Image

from sr3.config import DataConfig
from sr3.data.pairs import GlobalBatches, SRPairs, split_files
from sr3.errors import SR3Error
from sr3.imaging import to_pil, to_tensor
from sr3.resize import imresize


def test_sample_n_is_a_pure_function_of_seed_and_n(photo_dir):
    cfg = DataConfig(hr_size=32, scale=4)
    a, b = SRPairs(photo_dir, cfg, seed=1), SRPairs(photo_dir, cfg, seed=1)
    for n in (0, 5, 17):
        assert torch.equal(a[n]["hr"], b[n]["hr"])
    assert not torch.equal(a[0]["hr"], a[1]["hr"])
    assert not torch.equal(a[0]["hr"], SRPairs(photo_dir, cfg, seed=2)[0]["hr"])


def test_each_epoch_visits_every_image_once(photo_dir):
    data = SRPairs(photo_dir, DataConfig(hr_size=32), seed=0)
    n = len(data)
    for epoch in range(2):
        assert sorted(data.image_index(epoch * n + i) for i in range(n)) == list(range(n))


def test_lr_is_matlab_bicubic_of_hr_rounded_to_8_bits(photo_dir):
    pair = SRPairs(photo_dir, DataConfig(hr_size=32, scale=4))[3]
    assert pair["hr"].shape == (3, 32, 32) and pair["lr"].shape == (3, 8, 8)
    assert torch.equal(pair["lr"], to_tensor(to_pil(imresize(pair["hr"], scale=0.25).clamp(-1, 1))))  # as a saved LR file
    assert int(pair["sample"]) == 3


def test_degradations_are_chosen_by_name(photo_dir):
    from sr3.data.degradations import DEGRADATIONS, degrade

    hr = SRPairs(photo_dir, DataConfig(hr_size=32, scale=4))[0]["hr"]
    assert "bicubic" in DEGRADATIONS
    assert torch.equal(degrade("bicubic", hr, 4, torch.Generator()), SRPairs(photo_dir, DataConfig(hr_size=32, scale=4))[0]["lr"])
    with pytest.raises(SR3Error, match="unknown degradation 'blurry'; choose from: bicubic"):
        SRPairs(photo_dir, DataConfig(hr_size=32, scale=4, degradation="blurry"))


def test_faces_mode_resizes_whole_image(tmp_path, photo_dir):
    Image.open(photo_dir / "astronaut.png").resize((200, 200)).save(tmp_path / "face.jpg")
    pair = SRPairs(tmp_path, DataConfig(mode="faces", hr_size=128, scale=8))[0]
    assert pair["hr"].shape == (3, 128, 128) and pair["lr"].shape == (3, 16, 16)


def test_global_batches_shard_a_contiguous_range_across_ranks():
    per_rank = [iter(GlobalBatches(batch=3, accum=2, world=2, rank=r, start_step=5)) for r in range(2)]
    step5 = [next(it) for _ in range(2) for it in per_rank]  # two micro-batches per rank
    assert sorted(i for batch in step5 for i in batch) == list(range(5 * 2 * 2 * 3, 6 * 2 * 2 * 3))


def test_bad_files_are_reported_by_path(tmp_path, photo_dir):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(SR3Error, match="broken.png"):
        SRPairs(tmp_path, DataConfig(hr_size=32))


def test_images_smaller_than_the_crop_are_refused(tmp_path):
    Image.new("RGB", (20, 20)).save(tmp_path / "small.png")
    with pytest.raises(SR3Error, match="at least 32 px"):
        SRPairs(tmp_path, DataConfig(hr_size=32))
    with pytest.raises(SR3Error, match="multiple of data.scale"):
        SRPairs(tmp_path, DataConfig(hr_size=30, scale=4))


def test_holdout_split_is_by_name_disjoint_and_near_its_fraction(tmp_path, photo_dir):
    names = [Path(f"face_{i:04d}.jpg") for i in range(2000)]
    held = split_files(names, 0.1, "holdout")
    kept = split_files(names, 0.1, "train")
    assert set(held).isdisjoint(kept) and len(held) + len(kept) == len(names)
    assert 150 < len(held) < 250
    moved = [Path("elsewhere") / p.name for p in names]  # the split follows the name, not the folder
    assert [p.name for p in split_files(moved, 0.1, "holdout")] == [p.name for p in held]
    assert split_files(names, 0.0, "train") == names


def test_dataset_splits_never_share_an_image(photo_dir):
    cfg = DataConfig(hr_size=32, holdout=0.5)
    train, held = SRPairs(photo_dir, cfg), SRPairs(photo_dir, cfg, split="holdout")
    assert {p.name for p in train.files}.isdisjoint(p.name for p in held.files)
    assert len(train) + len(held) == len(list(photo_dir.iterdir()))


def test_cached_images_give_the_same_samples(photo_dir):
    cfg = DataConfig(hr_size=32, scale=4)
    plain, cached = SRPairs(photo_dir, cfg, seed=3), SRPairs(photo_dir, cfg, seed=3, cache=True)
    for n in (0, 4, 4 + len(plain), 9):
        a, b = plain[n], cached[n]
        assert torch.equal(a["hr"], b["hr"]) and torch.equal(a["lr"], b["lr"])
    assert 0 < len(cached._cache) <= len(cached)
