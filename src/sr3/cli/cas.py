"""`sr3 cas`: Classification Accuracy Score of generated images (train on samples, test on real images)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm.auto import tqdm

from sr3.cli.common import check_json
from sr3.errors import SR3Error

EXAMPLES = """examples:
  sr3 generate --model tinyimagenet-10 --class lemon -n 500 -o samples/      # ... once per class, one folder
  sr3 cas samples/ --test TinyImageNet-val/images --test-labels TinyImageNet-val/labels.csv \\
      --real TinyImageNet-10/train --json cas.json
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cas", help="Classification Accuracy Score of generated images", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("samples", help="generated images: class sub-folders, or files named CLASS_*.png (as sr3 generate writes)")
    p.add_argument("--test", required=True, help="folder of real test images")
    p.add_argument("--test-labels", required=True, help="CSV with a 'file' column and a column holding the class names")
    p.add_argument("--real", help="real training images in class sub-folders: also train on them, for the ceiling")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the figures to this JSON file")
    p.add_argument("--quiet", action="store_true")


def labelled_images(folder: str | Path) -> tuple[list[Path], list[str]]:
    """Images and class names: the first sub-folder under `folder`, or else the file name before its last '_'."""
    from sr3.imaging import list_images

    root = Path(folder)
    files = list_images(root)
    names = []
    for f in files:
        parts = f.relative_to(root).parts
        names.append(parts[0] if len(parts) > 1 else f.stem.rpartition("_")[0])
    if "" in names:
        raise SR3Error(f"cannot tell the class of every image in {folder}: use class sub-folders or CLASS_*.png names")
    return files, names


def test_images(folder: str | Path, labels_csv: str | Path, classes: list[str]) -> tuple[list[Path], list[str]]:
    """The real test images of the known classes, by a labels CSV."""
    from sr3.imaging import list_images
    from sr3.metrics.fid import labels_from_csv

    label_of = labels_from_csv(labels_csv, classes)
    files = [f for f in list_images(folder) if f.name in label_of]
    if not files:
        raise SR3Error(f"no image of {folder} has one of the sample classes in {labels_csv}")
    return files, [label_of[f.name] for f in files]


def load_tensor(files: list[Path], size: tuple[int, int]):
    """Images as one [N, 3, H, W] tensor in [-1, 1], resized by MATLAB-style bicubic where their size differs."""
    import torch

    from sr3.imaging import load_image, to_tensor
    from sr3.resize import imresize

    out = []
    for f in files:
        x = to_tensor(load_image(f))
        out.append(x if tuple(x.shape[-2:]) == size else imresize(x, size=size).clamp(-1, 1))
    return torch.stack(out)


def run(args: argparse.Namespace) -> None:
    import torch

    from sr3.imaging import load_image
    from sr3.metrics.cas import CASConfig, accuracy, train_classifier

    if args.epochs < 1:
        raise SR3Error("--epochs must be at least 1")
    check_json(args.json)
    files, names = labelled_images(args.samples)
    classes = sorted(set(names))
    index = {c: i for i, c in enumerate(classes)}
    test_files, test_names = test_images(args.test, args.test_labels, classes)
    w, h = load_image(test_files[0]).size
    test_x, test_y = load_tensor(test_files, (h, w)), torch.tensor([index[n] for n in test_names])
    cfg = CASConfig(epochs=args.epochs, seed=args.seed)
    sets = [("samples", files, names)]
    if args.real:
        real_files, real_names = labelled_images(args.real)
        keep = [(f, n) for f, n in zip(real_files, real_names) if n in index]
        sets.append(("real", [f for f, _ in keep], [n for _, n in keep]))
    result = {"classes": classes, "n_test": len(test_files), "epochs": args.epochs}
    for name, train_files, train_names in sets:
        x, y = load_tensor(train_files, (h, w)), torch.tensor([index[n] for n in train_names])
        with tqdm(total=args.epochs, desc=f"classifier on {name}", unit="epoch", disable=args.quiet) as bar:
            net = train_classifier(x, y, len(classes), cfg, progress=bar.update)
        result[f"accuracy_{name}"] = accuracy(net, test_x, test_y)
        result[f"n_train_{name}"] = len(train_files)
    line = f"CAS {100 * result['accuracy_samples']:.1f}% top-1 on {len(test_files)} real images ({len(classes)} classes)"
    if args.real:
        line += f"; trained on real images: {100 * result['accuracy_real']:.1f}%"
    print(line)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
