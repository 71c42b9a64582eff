"""Tests for sr3.imaging and sr3.resize: loading, tensor conversion, MATLAB bicubic against real SR test sets, blur, luma."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sr3.errors import SR3Error
from sr3.imaging import list_images, load_image, to_pil, to_tensor
from sr3.metrics.psnr_ssim import rgb_to_y
from sr3.resize import gaussian_blur, gaussian_kernel1d, imresize, mod_crop

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_data = pytest.mark.skipif(not (DATA / "Set5").is_dir(), reason="shared SR test sets not present")


def _photo(width: int = 24, height: int = 16) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


# --- load_image / list_images -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda a: Image.fromarray(a[:, :, 0], mode="L"),
        lambda a: Image.fromarray(np.dstack([a, a[:, :, :1]]), mode="RGBA"),
        lambda a: Image.fromarray(a).convert("P"),
        lambda a: Image.fromarray(a).convert("LA"),
    ],
    ids=["gray", "rgba", "palette", "gray-alpha"],
)
def test_load_image_converts_modes_to_rgb(tmp_path, make):
    path = tmp_path / "img.png"
    make(_photo()).save(path)
    img = load_image(path)
    assert img.mode == "RGB" and img.size == (24, 16)


def test_load_image_cmyk_jpeg(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(_photo()).convert("CMYK").save(path)
    img = load_image(path)
    assert img.mode == "RGB" and img.size == (24, 16)


def test_load_image_scales_16_bit_instead_of_clipping(tmp_path):
    path = tmp_path / "deep.png"
    wide = np.array([[0, 257 * 100, 65535, 257 * 3]], dtype=np.uint16).repeat(2, axis=0)
    Image.fromarray(wide).save(path)
    assert Image.open(path).mode.startswith("I")
    img = load_image(path)
    assert img.mode == "RGB" and img.size == (4, 2)
    np.testing.assert_array_equal(np.asarray(img)[0, :, 0], [0, 100, 255, 3])


def test_load_image_applies_exif_orientation(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    Image.fromarray(_photo(width=40, height=20)).save(path, exif=exif)
    assert Image.open(path).size == (40, 20)
    assert load_image(path).size == (20, 40)


def test_load_image_gray_mode(tmp_path):
    path = tmp_path / "img.png"
    Image.fromarray(_photo()).save(path)
    assert load_image(path, mode="L").mode == "L"


@pytest.mark.parametrize("content", [b"not an image at all", None], ids=["text", "missing"])
def test_load_image_bad_file_raises_with_path(tmp_path, content):
    path = tmp_path / "bad.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SR3Error, match="bad.png"):
        load_image(path)


def test_load_image_truncated_raises_with_path(tmp_path):
    path = tmp_path / "cut.png"
    Image.fromarray(_photo(64, 64)).save(path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(SR3Error, match="cut.png"):
        load_image(path)


def test_list_images_recursive_sorted_case_insensitive(tmp_path):
    (tmp_path / "b").mkdir()
    for name in ["b/z.PNG", "a.jpg", "b/c.Jpeg", "notes.txt", "x.tif"]:
        (tmp_path / name).write_bytes(b"")
    found = list_images(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a.jpg", "b/c.Jpeg", "b/z.PNG", "x.tif"]


def test_list_images_missing_or_empty_folder(tmp_path):
    with pytest.raises(SR3Error, match="does not exist"):
        list_images(tmp_path / "nope")
    (tmp_path / "readme.txt").write_text("no images")
    with pytest.raises(SR3Error, match="no images"):
        list_images(tmp_path)


# --- tensors, crops, luma -------------------------------------------------------------------------------------


def test_to_tensor_range_and_round_trip():
    array = _photo()
    array[0, 0] = [0, 255, 128]
    x = to_tensor(Image.fromarray(array))
    assert x.shape == (3, 16, 24) and x.dtype == torch.float32
    assert x.min() == -1 and x.max() == 1
    np.testing.assert_array_equal(np.asarray(to_pil(x)), array)


def test_to_pil_clamps_and_handles_one_channel():
    img = to_pil(torch.tensor([[[-3.0, 2.0, 0.0]]]))
    assert img.mode == "L"
    np.testing.assert_array_equal(np.asarray(img), [[0, 255, 128]])
    assert to_tensor(img).shape == (1, 1, 3)


def test_mod_crop_is_top_left():
    img = Image.fromarray(_photo(width=29, height=26))
    cropped = mod_crop(img, 12)
    assert cropped.size == (24, 24)
    np.testing.assert_array_equal(np.asarray(cropped), np.asarray(img)[:24, :24])


def test_rgb_to_y_range():
    assert rgb_to_y(np.full((2, 2, 3), 255.0)) == pytest.approx(np.full((2, 2), 235.0))
    assert rgb_to_y(np.zeros((2, 2, 3))) == pytest.approx(np.full((2, 2), 16.0))
    # Channel order matters: pure red has Y = 16 + 65.481, pure blue 16 + 24.966.
    assert rgb_to_y(np.array([[[255.0, 0, 0], [0, 0, 255.0]]])) == pytest.approx(np.array([[81.481, 40.966]]))


# --- imresize ------------------------------------------------------------------------------------------------


def test_imresize_upscale_matches_hand_computation():
    # Scale 2, output 1: u = 1/2 + 0.5 (1 - 2) ... = 0.75; taps at distances 1.75, 0.75, -0.25, -1.25 weigh
    # -0.0234375, 0.2265625, 0.8671875, -0.0703125 on (mirrored) inputs x1, x0, x0, x1 -> 1.09375 x0 - 0.09375 x1.
    # Output 2: u = 1.25 -> 0.796875 x0 + 0.2265625 x1 - 0.0234375 x2.
    out = imresize(torch.tensor([[0.0, 1.0, 2.0, 3.0]], dtype=torch.float64), scale=2)
    assert out.shape == (2, 8)
    assert out[0, 0].item() == pytest.approx(-0.09375, abs=1e-12)
    assert out[0, 1].item() == pytest.approx(0.1796875, abs=1e-12)


def test_imresize_antialiased_downscale_blends_blocks():
    # Scale 1/2 widens the kernel to 8 taps: output 1 weighs x0..x3 by 0.546875, 0.3984375, 0.1015625, -0.046875,
    # so the block [0, 0, 1, 1] does not give back its block values 0 and 1.
    out = imresize(torch.tensor([[0.0, 0.0, 1.0, 1.0]], dtype=torch.float64), scale=0.5)
    torch.testing.assert_close(out, torch.tensor([[0.0546875, 0.9453125]], dtype=torch.float64))


@pytest.mark.parametrize("scale", [0.25, 0.5, 1 / 3, 2, 3])
def test_imresize_keeps_constants(scale):
    x = torch.full((2, 3, 12, 18), 0.7, dtype=torch.float64)
    torch.testing.assert_close(imresize(x, scale=scale), torch.full_like(imresize(x, scale=scale), 0.7))


def test_imresize_scale_one_is_identity():
    x = torch.randn(2, 3, 7, 9)
    torch.testing.assert_close(imresize(x, scale=1), x)


def test_imresize_shapes_batch_dims_and_dtypes():
    x = torch.randn(2, 5, 3, 16, 20, dtype=torch.float64)
    assert imresize(x, scale=0.25).shape == (2, 5, 3, 4, 5)
    assert imresize(x, scale=1.5).shape == (2, 5, 3, 24, 30)
    assert imresize(x, size=(10, 33)).shape == (2, 5, 3, 10, 33)
    assert imresize(x.float(), scale=0.5).dtype == torch.float32
    torch.testing.assert_close(imresize(x.float(), scale=0.5), imresize(x, scale=0.5).float(), atol=1e-5, rtol=0)
    torch.testing.assert_close(imresize(x, scale=0.5)[1, 2], imresize(x[1, 2], scale=0.5))


def test_imresize_argument_errors():
    x = torch.zeros(3, 8, 8)
    with pytest.raises(ValueError):
        imresize(x)
    with pytest.raises(ValueError):
        imresize(x, scale=2, size=(16, 16))


def _max_deviation(hr_dir: Path, lr_dir: Path, scale: int) -> tuple[int, int]:
    """Largest grey-level error of imresize and of PIL's BICUBIC against MATLAB-made LR files of GTmod12 crops."""
    ours, pil = 0, 0
    for hr_path in sorted(hr_dir.glob("*.png")):
        hr = mod_crop(load_image(hr_path), 12)
        lr = np.asarray(load_image(lr_dir / hr_path.name)).astype(int)
        x = torch.from_numpy(np.asarray(hr).astype(np.float32)).permute(2, 0, 1)
        down = imresize(x, scale=1 / scale).round().clamp(0, 255).permute(1, 2, 0).numpy().astype(int)
        ours = max(ours, np.abs(down - lr).max())
        pil_down = np.asarray(hr.resize((hr.width // scale, hr.height // scale), Image.BICUBIC)).astype(int)
        pil = max(pil, np.abs(pil_down - lr).max())
    return ours, pil


@needs_data
@pytest.mark.parametrize(
    "folder,lr_name,scale", [("Set5", "LRbicx4", 4), ("Set5", "LRbicx2", 2), ("Set14", "LRbicx4", 4)]
)
def test_imresize_matches_matlab_lr_files(folder, lr_name, scale):
    ours, pil = _max_deviation(DATA / folder / "HR", DATA / folder / lr_name, scale)
    assert ours <= 1  # the remaining differences are .5 ties MATLAB rounded the other way
    assert pil >= 10  # why this function exists


# --- blur ------------------------------------------------------------------------------------------------------


def test_gaussian_kernel1d_normalised_and_symmetric():
    taps = gaussian_kernel1d(7, 1.2)
    assert taps.shape == (7,) and taps.sum().item() == pytest.approx(1.0)
    torch.testing.assert_close(taps, taps.flip(0))
    batch = gaussian_kernel1d(5, torch.tensor([0.5, 2.0]))
    assert batch.shape == (2, 5)
    torch.testing.assert_close(batch.sum(-1), torch.ones(2))
    torch.testing.assert_close(batch[1], gaussian_kernel1d(5, 2.0))


def test_gaussian_blur_tiny_sigma_is_identity():
    x = torch.randn(2, 3, 9, 9)
    torch.testing.assert_close(gaussian_blur(x, 1e-4, 5), x)


def test_gaussian_blur_per_sample_sigma():
    x = torch.randn(3, 2, 16, 16)
    sigma = torch.tensor([0.0, 1.0, 2.5])
    out = gaussian_blur(x, sigma, 9)
    assert out.shape == x.shape
    torch.testing.assert_close(out[0], x[0])
    for b in (1, 2):
        torch.testing.assert_close(out[b], gaussian_blur(x[b], sigma[b].item(), 9))
    assert out[2].std() < out[1].std() < x[1].std()


def test_gaussian_blur_reflects_at_the_border():
    # A ramp 0, 1, 2, ... along W: reflect padding puts x[1] on both sides of x[0], so out[0] = 2 a with taps (a, b, a).
    x = torch.arange(8.0).expand(1, 4, 8)
    a = gaussian_kernel1d(3, 1.0)[0].item()
    out = gaussian_blur(x, 1.0, 3)
    torch.testing.assert_close(out[..., 0], torch.full((1, 4), 2 * a))
    torch.testing.assert_close(out[..., 1:-1], x[..., 1:-1])


def test_gaussian_blur_keeps_constants_and_checks_sigma_shape():
    x = torch.full((2, 3, 8, 8), 0.3)
    torch.testing.assert_close(gaussian_blur(x, 1.5, 7), x)
    with pytest.raises(ValueError):
        gaussian_blur(x, torch.tensor([1.0, 2.0, 3.0]), 7)
