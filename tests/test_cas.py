"""Classification Accuracy Score: a classifier trained on one labelled set, scored on another."""

import torch

from sr3.cli.main import main
from sr3.imaging import to_tensor
from sr3.metrics.cas import CASConfig, accuracy, augment, train_classifier

from conftest import photo


def _crops(name, count, offset, size=32):
    img = photo(name)
    return [img.crop((offset + 9 * i, 20 + 5 * i, offset + 9 * i + size, 20 + 5 * i + size)) for i in range(count)]


def test_a_classifier_learns_two_photos_apart():
    train = [to_tensor(c) for c in _crops("coffee", 24, 0) + _crops("chelsea", 24, 0)]
    test = [to_tensor(c) for c in _crops("coffee", 10, 250) + _crops("chelsea", 10, 250)]
    y_train, y_test = torch.tensor([0] * 24 + [1] * 24), torch.tensor([0] * 10 + [1] * 10)
    net = train_classifier(torch.stack(train), y_train, 2, CASConfig(epochs=6, batch_size=16, width=8))
    assert accuracy(net, torch.stack(test), y_test) >= 0.8
    shuffled = train_classifier(torch.stack(train), y_train[torch.randperm(48)], 2, CASConfig(epochs=6, batch_size=16, width=8))
    assert accuracy(shuffled, torch.stack(test), y_test) < accuracy(net, torch.stack(test), y_test)


def test_augment_flips_and_crops_within_the_image():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    out = augment(x, torch.Generator().manual_seed(0), pad=2)
    assert out.shape == x.shape and torch.equal(augment(x, torch.Generator().manual_seed(0), pad=2), out)


def test_cas_cli_reads_classes_from_names_and_labels(tmp_path, capsys):
    samples, test = tmp_path / "samples", tmp_path / "test"
    samples.mkdir()
    test.mkdir()
    for i, c in enumerate(_crops("coffee", 6, 0)):
        c.save(samples / f"n01_{i:05d}.png")
    for i, c in enumerate(_crops("chelsea", 6, 0)):
        c.save(samples / f"n02_{i:05d}.png")
    rows = ["file,wnid"]
    for i, c in enumerate(_crops("coffee", 2, 250) + _crops("chelsea", 2, 250) + _crops("rocket", 1, 0)):
        c.save(test / f"val_{i}.png")
        rows.append(f"val_{i}.png,{['n01', 'n01', 'n02', 'n02', 'n99'][i]}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    assert main(["cas", str(samples), "--test", str(test), "--test-labels", str(tmp_path / "labels.csv"),
                 "--epochs", "1", "--quiet"]) == 0
    assert "on 4 real images (2 classes)" in capsys.readouterr().out
    (samples / "unlabelled.png").write_bytes((samples / "n01_00000.png").read_bytes())
    assert main(["cas", str(samples), "--test", str(test), "--test-labels", str(tmp_path / "labels.csv")]) == 2
    assert "cannot tell the class" in capsys.readouterr().err
