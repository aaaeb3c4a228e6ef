"""Image loading: every format a user throws at it, and every bad input as a typed, named error."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from exemplar_color.errors import (
    CorruptImageError,
    ImageError,
    ImageNotFoundError,
    ImageTooLargeError,
    ImageTooSmallError,
    NotAnImageError,
)
from exemplar_color.io import as_array, atomic_write, list_images, load_image, save_image


@pytest.fixture(scope="module")
def photo(data_dir):
    return Image.open(data_dir / "kodak" / "kodim23.png").convert("RGB")


@pytest.fixture(scope="module")
def photo_arr(photo):
    return np.asarray(photo, dtype=np.float32) / 255.0


@pytest.mark.parametrize("ext,kw,tol", [
    (".png", {}, 0), (".tif", {}, 0), (".webp", {"lossless": True}, 0), (".bmp", {}, 0),
    (".jpg", {"quality": 95}, 0.02),
])
def test_formats_load_as_rgb(tmp_path, photo, photo_arr, ext, kw, tol):
    p = tmp_path / f"x{ext}"
    photo.save(p, **kw)
    arr = load_image(p)
    assert arr.shape == photo_arr.shape and arr.dtype == np.float32
    err = np.abs(arr - photo_arr)
    # lossless formats are exact; JPEG is judged on its mean error (chroma subsampling makes single pixels far off)
    assert (err.mean() if ext == ".jpg" else err.max()) <= tol + 1e-6


def test_grayscale_stays_gray_and_can_be_forced_rgb(tmp_path, photo):
    p = tmp_path / "g.png"
    photo.convert("L").save(p)
    assert load_image(p).ndim == 2
    rgb = load_image(p, "RGB")
    assert rgb.shape[2] == 3 and np.array_equal(rgb[..., 0], rgb[..., 2])


def test_sixteen_bit_png_keeps_precision(tmp_path):
    ramp = (np.arange(256 * 64, dtype=np.uint32).reshape(64, 256) * 4).astype(np.uint16)
    p = tmp_path / "g16.png"
    Image.fromarray(ramp).save(p)
    arr = load_image(p)
    assert arr.shape == (64, 256)
    np.testing.assert_allclose(arr, ramp / 65535.0, atol=1e-6)
    assert len(np.unique(arr)) > 256  # more levels than 8 bits could hold


def test_rgba_composites_on_white_or_drops_alpha(tmp_path):
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., 0] = 255  # red, fully transparent on the left half
    rgba[:, 16:, 3] = 255
    p = tmp_path / "a.png"
    Image.fromarray(rgba, "RGBA").save(p)
    with pytest.warns(UserWarning, match="alpha channel is not kept"):  # said, not silent
        white = load_image(p)
    assert np.allclose(white[:, :16], 1.0) and np.allclose(white[:, 16:], [1, 0, 0])
    with pytest.warns(UserWarning, match="alpha channel is not kept"):
        dropped = load_image(p, alpha="drop")
    assert np.allclose(dropped, [1, 0, 0])


def test_palette_cmyk_and_exif_rotation(tmp_path, photo, photo_arr):
    pal = tmp_path / "p.png"
    photo.convert("P", palette=Image.Palette.ADAPTIVE).save(pal)
    assert load_image(pal).shape == photo_arr.shape
    cmyk = tmp_path / "c.jpg"
    photo.convert("CMYK").save(cmyk, quality=95)
    assert load_image(cmyk).shape == photo_arr.shape
    rot = tmp_path / "r.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    photo.save(rot, exif=exif, quality=95)
    arr = load_image(rot)
    assert arr.shape == (photo_arr.shape[1], photo_arr.shape[0], 3)
    expected = np.asarray(photo.transpose(Image.Transpose.ROTATE_270), np.float32) / 255
    assert np.abs(arr - expected).mean() < 0.02


def test_missing_file(tmp_path):
    with pytest.raises(ImageNotFoundError, match="nope.png: no such file"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageNotFoundError, match="not a regular file"):
        load_image(tmp_path)


def test_not_an_image(tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("hello, I am text")
    with pytest.raises(NotAnImageError, match="notes.jpg"):
        load_image(p)
    empty = tmp_path / "empty.png"
    empty.touch()
    with pytest.raises(NotAnImageError, match="empty"):
        load_image(empty)


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_truncated_image(tmp_path, photo, ext):
    full = tmp_path / f"full{ext}"
    photo.save(full)
    data = full.read_bytes()
    bad = tmp_path / f"trunc{ext}"
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(CorruptImageError, match=f"trunc{ext}"):
        load_image(bad)


def test_size_limits(tmp_path, photo):
    p = tmp_path / "x.png"
    photo.save(p)
    with pytest.raises(ImageTooLargeError, match="over the limit"):
        load_image(p, max_pixels=1000)
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (8, 40)).save(tiny)
    with pytest.raises(ImageTooSmallError, match="short side"):
        load_image(tiny)


def test_decompression_bomb_header_is_refused_before_decoding(tmp_path):
    # A 30000x30000 PNG compresses to a few hundred KB; the header alone must be enough to refuse it.
    p = tmp_path / "bomb.png"
    Image.new("L", (30000, 30000)).save(p, optimize=False)
    with pytest.raises(ImageTooLargeError):
        load_image(p, max_pixels=100_000_000)


def test_errors_are_image_errors_naming_the_file(tmp_path):
    p = tmp_path / "bad.webp"
    p.write_bytes(b"RIFF\x00\x00\x00\x00WEBPVP8 garbage")
    with pytest.raises(ImageError) as info:
        load_image(p)
    assert str(p) in str(info.value)


def test_as_array_accepts_paths_pil_and_arrays(tmp_path, photo, photo_arr):
    p = tmp_path / "x.png"
    photo.save(p)
    assert np.array_equal(as_array(p), photo_arr)
    assert np.array_equal(as_array(photo), photo_arr)
    u8 = np.asarray(photo)
    assert np.array_equal(as_array(u8), photo_arr)
    assert as_array(u8, "L").ndim == 2
    with pytest.raises(ImageError, match="NaN"):
        as_array(np.full((32, 32), np.nan, np.float32))
    with pytest.raises(ImageError, match="array must be"):
        as_array(np.zeros((32, 32, 5), np.uint8))
    with pytest.raises(TypeError):
        as_array(42)


def test_save_is_lossless_and_atomic(tmp_path, photo_arr):
    for ext in (".png", ".tif", ".webp"):
        p = save_image(tmp_path / f"out{ext}", photo_arr)
        assert np.array_equal(load_image(p), np.round(photo_arr * 255) / 255)
    with pytest.raises(ValueError, match="unsupported output extension"):
        save_image(tmp_path / "out.xyz", photo_arr)
    # a failure while writing leaves neither the target nor a temp file behind
    with pytest.raises(RuntimeError):
        with atomic_write(tmp_path / "never.png") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert sorted(os.listdir(tmp_path)) == ["out.png", "out.tif", "out.webp"]


@pytest.mark.slow  # a subprocess killed mid-write
def test_killed_writer_never_leaves_a_half_written_output(tmp_path):
    code = (
        "import os, numpy as np\n"
        "from exemplar_color.io import atomic_write\n"
        f"with atomic_write({str(tmp_path / 'out.png')!r}) as t:\n"
        "    t.write_bytes(b'partial')\n"
        "    os.kill(os.getpid(), 9)\n"
    )
    subprocess.run([sys.executable, "-c", code])
    assert not (tmp_path / "out.png").exists()


def test_list_images_is_sorted_and_filters(tmp_path, photo):
    (tmp_path / "sub").mkdir()
    for name in ["b.png", "a.jpg", "sub/c.tif", ".hidden.png", "notes.txt"]:
        target = tmp_path / name
        if name.endswith(".txt"):
            target.write_text("x")
        else:
            photo.save(target)
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == ["a.jpg", "b.png", "sub/c.tif"]


def test_uris_are_read_through_pyarrow_file_systems(tmp_path, photo):
    """A photo named by URI (here file://, pyarrow's local file system: the same code path as s3:// or gs://,
    no network) loads as its path does; a missing one, an empty one or an unknown scheme names the URI."""
    pytest.importorskip("pyarrow")
    from exemplar_color.errors import UsageError

    photo.save(tmp_path / "p.png")
    uri = (tmp_path / "p.png").as_uri()
    assert uri.startswith("file:///")
    np.testing.assert_array_equal(load_image(uri), load_image(tmp_path / "p.png"))
    np.testing.assert_array_equal(as_array(uri), load_image(tmp_path / "p.png"))
    with pytest.raises(ImageNotFoundError, match=f"{uri[:-5]}nope.png: no such file"):
        load_image(uri[:-5] + "nope.png")
    (tmp_path / "empty.png").touch()
    with pytest.raises(NotAnImageError, match="empty.png: file is empty"):
        load_image((tmp_path / "empty.png").as_uri())
    with pytest.raises(UsageError, match="ftp:// scheme is not read"):
        load_image("ftp://host/p.png")
