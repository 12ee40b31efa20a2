import io
import os

import numpy as np
import pytest
from PIL import Image

from simsearch.errors import DataError, ImageError
from simsearch.images import PixelBudget, decode_image, image_pixels, load_array, scan_folder
from simsearch.preprocess import Preprocess


def save(img: Image.Image, path, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return path


def gradient(mode: str, size=(40, 30)) -> Image.Image:
    arr = np.tile(np.linspace(0, 255, size[0]).astype(np.uint8), (size[1], 1))
    return Image.fromarray(arr, "L").convert(mode)


@pytest.mark.parametrize(
    "mode, ext",
    [
        ("1", "png"),
        ("L", "png"),
        ("LA", "png"),
        ("P", "png"),
        ("RGB", "jpg"),
        ("RGBA", "png"),
        ("CMYK", "jpg"),
        ("CMYK", "tiff"),
    ],
)
def test_every_mode_decodes_to_rgb_and_gray(tmp_path, mode, ext):
    path = save(gradient(mode), tmp_path / f"x.{ext}")
    rgb, gray = decode_image(path, channels=3), decode_image(path, channels=1)
    assert rgb.mode == "RGB" and gray.mode == "L" and rgb.size == (40, 30)
    arr = load_array(path, Preprocess.plain(3, 16))
    assert arr.shape == (3, 16, 16) and arr.dtype == np.uint8


def test_16_bit_and_float_images_use_their_range(tmp_path):
    arr16 = (np.linspace(0, 65535, 64 * 8).reshape(8, 64)).astype(np.uint16)
    assert Image.fromarray(arr16).mode == "I;16" and Image.fromarray(arr16.astype(np.int32)).mode == "I"
    p16 = save(Image.fromarray(arr16), tmp_path / "deep.png")
    out16 = np.asarray(decode_image(p16, channels=1))
    assert out16.min() == 0 and out16.max() == 255  # not clipped to white
    arrf = np.linspace(-3.0, 7.0, 64 * 8).reshape(8, 64).astype(np.float32)
    pf = save(Image.fromarray(arrf), tmp_path / "float.tiff")
    outf = np.asarray(decode_image(pf, channels=1))
    assert outf.min() == 0 and outf.max() == 255 and outf[0, 0] < outf[-1, -1]
    pi = save(Image.fromarray(arr16.astype(np.int32) * 3), tmp_path / "int.tiff")
    assert np.asarray(decode_image(pi, channels=1)).max() == 255


def test_transparent_pixels_become_white(tmp_path):
    img = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    img.putpixel((5, 5), (0, 0, 0, 255))
    out = np.asarray(decode_image(save(img, tmp_path / "t.png"), channels=1))
    assert out[0, 0] == 255 and out[5, 5] == 0


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (60, 20), "white")
    img.paste((0, 0, 0), (0, 0, 10, 20))  # black band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to view
    path = save(img, tmp_path / "phone.jpg", exif=exif.tobytes())
    out = decode_image(path, channels=1)
    assert out.size == (20, 60)
    arr = np.asarray(out)
    assert arr[:10].mean() < 60 and arr[-10:].mean() > 200  # band is now on top


def test_first_frame_of_an_animation(tmp_path):
    frames = [Image.new("L", (8, 8), 0), Image.new("L", (8, 8), 255)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    assert np.asarray(decode_image(path, channels=1)).max() < 10


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "empty file"),
        (b"this is not an image at all", "not an image"),
    ],
)
def test_unreadable_bytes_give_reasons(tmp_path, content, reason):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=reason):
        decode_image(path)


def test_truncated_jpeg_is_reported(tmp_path):
    buf = io.BytesIO()
    gradient("RGB", (200, 200)).save(buf, "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageError, match=r"truncated|cannot decode"):
        load_array(path, Preprocess.plain(3, 16))


def test_decompression_bomb_cap(tmp_path):
    path = save(Image.new("1", (4000, 3000)), tmp_path / "big.png")
    with pytest.raises(ImageError, match="over the limit"):
        decode_image(path, max_pixels=10_000_000)
    assert decode_image(path, channels=1, max_pixels=13_000_000).size == (4000, 3000)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file regardless of permissions")
def test_permission_denied(tmp_path):
    path = save(gradient("L"), tmp_path / "secret.png")
    path.chmod(0)
    with pytest.raises(ImageError, match="permission denied"):
        decode_image(path)


def test_scan_labels_hidden_files_symlink_loops_and_unicode(tmp_path):
    root = tmp_path / "photos"
    save(gradient("L"), root / "top.png")
    save(gradient("L"), root / "Zoë" / "ünïcødé 画像.png")
    save(gradient("L"), root / "cats" / "deep" / "a.JPG", format="JPEG")
    save(gradient("L"), root / ".hidden" / "x.png")
    save(gradient("L"), root / "cats" / ".secret.png")
    (root / "cats" / "notes.txt").write_text("not an image")
    os.symlink(root, root / "cats" / "loop")  # a symlink loop
    scan = scan_folder(root)
    found = {(f.path.relative_to(root).as_posix(), f.label) for f in scan.files}
    assert found == {("top.png", None), ("Zoë/ünïcødé 画像.png", "Zoë"), ("cats/deep/a.JPG", "cats")}
    assert any("loop" in s.reason for s in scan.skipped)


def test_scan_errors(tmp_path):
    with pytest.raises(DataError, match="no such"):
        scan_folder(tmp_path / "missing")
    (tmp_path / "f.png").write_bytes(b"")
    with pytest.raises(DataError, match="not a folder"):
        scan_folder(tmp_path / "f.png")


def test_centre_crop_keeps_the_middle(tmp_path):
    from simsearch.images import center_crop, to_array

    arr = np.zeros((40, 40, 3), np.uint8)
    arr[10:30, 10:30] = 255  # a white square filling the middle half
    img = Image.fromarray(arr)
    assert center_crop(img, 0.5).size == (20, 20)
    assert to_array(img, Preprocess.plain(3, 10, crop=0.5)).min() == 255  # only the white middle is left
    assert to_array(img, Preprocess.plain(3, 10)).min() == 0
    path = save(img, tmp_path / "c.png")
    assert load_array(path, Preprocess.plain(3, 10, crop=0.5)).min() == 255
    with pytest.raises(ValueError, match="crop"):
        center_crop(img, 0.0)


def _drawing(canvas: int, left: int, top: int, scale: int, ink: int = 0, paper: int = 255) -> Image.Image:
    """An 'L' shape (two strokes, 6 x 4 units) drawn at `scale` pixels a unit, placed at (left, top)."""
    arr = np.full((canvas, canvas), paper, np.uint8)
    arr[top : top + 6 * scale, left : left + scale] = ink  # the upright
    arr[top + 5 * scale : top + 6 * scale, left : left + 4 * scale] = ink  # the foot
    return Image.fromarray(arr, "L")


def test_fit_ink_frames_the_strokes_wherever_and_however_large_they_are(tmp_path):
    from simsearch.images import INK_MARGIN, Ink, fit_ink, to_array

    dark = Preprocess.plain(1, 28, ink=Ink.DARK)

    small_corner = _drawing(200, left=150, top=5, scale=4)  # 24 x 16 pixels in the top-right corner
    large_centre = _drawing(200, left=60, top=40, scale=20)  # 120 x 80 pixels in the middle
    framed = fit_ink(small_corner, Ink.DARK)
    # a square whose side is the strokes' longer side plus the margin on both ends
    assert framed.size[0] == framed.size[1] == pytest.approx(24 * (1 + 2 * INK_MARGIN), abs=1)
    # parts of that square lie outside the page (the strokes touch its top): they are paper
    assert np.asarray(framed)[0].min() == 255
    a, b = to_array(small_corner, dark), to_array(large_centre, dark)
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 10  # the same picture, resampling aside
    plain_a, plain_b = to_array(small_corner, Preprocess.plain(1, 28)), to_array(large_centre, Preprocess.plain(1, 28))
    assert np.abs(plain_a.astype(int) - plain_b.astype(int)).mean() > 20  # without it: not at all
    # the ink is centred: as much paper left of the strokes as right of them
    cols = np.flatnonzero(a[0].min(0) < 128)
    assert abs(cols[0] - (27 - cols[-1])) <= 1
    # white ink on black (signatures) when told so; through load_array from a file as well
    light = save(_drawing(200, left=150, top=5, scale=4, ink=255, paper=0), tmp_path / "light.png")
    assert np.abs(255 - load_array(light, Preprocess.plain(1, 28, ink=Ink.LIGHT)).astype(int) - a).mean() < 2


def test_fit_ink_ignores_a_speck_and_leaves_a_blank_page_alone():
    from simsearch.images import Ink, fit_ink

    drawing = _drawing(300, left=100, top=100, scale=10)  # 60 x 40 pixels, 1,500 ink pixels
    specked = np.asarray(drawing).copy()
    specked[295, 2] = 0  # a speck of dust far from the strokes
    assert fit_ink(Image.fromarray(specked), Ink.DARK).size == fit_ink(drawing, Ink.DARK).size
    blank = Image.new("L", (50, 40), 250)
    assert fit_ink(blank, Ink.DARK) is blank


def test_pixel_budget_bounds_what_is_decoded_at_once():
    import threading
    import time

    budget = PixelBudget(100)
    buf = io.BytesIO()
    Image.new("RGB", (12, 5)).save(buf, "PNG")
    assert image_pixels(buf.getvalue()) == 60
    with pytest.raises(ImageError):
        image_pixels(b"not an image")
    peak, lock = [0], threading.Lock()

    def one(pixels: int) -> None:
        with budget.hold(pixels, timeout=10):
            with lock:
                peak[0] = max(peak[0], budget.in_use)
            time.sleep(0.02)

    threads = [threading.Thread(target=one, args=(p,)) for p in (60, 60, 30, 500, 10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] <= 100 and budget.in_use == 0  # 500 waited to be alone, counted as the whole budget
    with budget.hold(80):
        with pytest.raises(TimeoutError):
            with budget.hold(30, timeout=0.05):
                pass


def _photo(width: int, height: int) -> Image.Image:
    from PIL import ImageDraw

    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height)], axis=2)
    img = Image.fromarray(rgb.astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for i in range(12):
        draw.ellipse(
            (i * width // 14, i * height // 16, i * width // 14 + width // 6, i * height // 16 + height // 5),
            outline=(250, 250, 250),
            width=max(2, width // 200),
        )
    return img


def test_a_big_jpeg_is_decoded_at_the_scale_the_encoder_needs():
    buf = io.BytesIO()
    _photo(4000, 3000).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    small = decode_image(data, channels=3, min_side=448)
    assert 448 <= min(small.size) < 1500 and small.size[0] > small.size[1]  # 1/4 scale: 1000 x 750
    assert decode_image(data, channels=3).size == (4000, 3000)
    # the encoder's input is almost the same as from the full decode: DCT scaling is a good box filter
    rgb = Preprocess(channels=3, size=224, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    for pre in (rgb, Preprocess(channels=1, size=105, crop=0.8)):
        from simsearch.images import to_array

        fast = load_array(data, pre).astype(np.float32)
        full = to_array(decode_image(data, channels=3), pre).astype(np.float32)
        assert fast.shape == full.shape and np.abs(fast - full).mean() < 3.0
    # a PNG has no reduced decode: the same pixels either way
    png = io.BytesIO()
    _photo(1200, 900).save(png, "PNG")
    assert decode_image(png.getvalue(), min_side=100).size == (1200, 900)


def test_heic_and_avif_photos_are_images(tmp_path):
    pillow_heif = pytest.importorskip("pillow_heif")
    from PIL import features

    photo = _photo(640, 480)
    (tmp_path / "a").mkdir()
    pillow_heif.from_pillow(photo).save(tmp_path / "a" / "phone.heic", quality=90)
    made = ["phone.heic"]
    if features.check("avif"):
        photo.save(tmp_path / "a" / "web.avif", quality=80)
        made.append("web.avif")
    scan = scan_folder(tmp_path)
    assert sorted(f.path.name for f in scan.files) == sorted(made) and not scan.skipped
    for f in scan.files:
        img = decode_image(f.path)
        assert img.size == (640, 480) and img.mode == "RGB"
        assert np.abs(np.asarray(img, np.float32) - np.asarray(photo, np.float32)).mean() < 8
