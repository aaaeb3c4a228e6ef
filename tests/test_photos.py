"""A photo is read once and converted once: its working-size Lab is made while reading, and whether it has
colour is judged on that Lab -- the same verdict as judging the full-resolution pixels, on real photos."""

import numpy as np
import pytest
import torch
from PIL import Image

from exemplar_color.errors import ImageTooSmallError
from exemplar_color.photos import read_photo
from exemplar_color.working import is_gray, to_working, working_size

COLOUR = ["kodak/kodim03.png", "kodak/kodim23.png", "bsds500/test/100007.jpg"]
GRAY_SCANS = ["legacy-gray/chaplin_1.jpg", "legacy-gray/einstein_1.jpg", "legacy-gray/ansel_adams3.jpg"]


def _existing(data_dir, names):
    paths = [data_dir / n for n in names if (data_dir / n).is_file()]
    if len(paths) < 2:
        pytest.skip("photos missing from ../shared/data")
    return paths


def test_colour_is_judged_on_the_working_lab_as_on_the_full_photo(data_dir):
    paths = _existing(data_dir, COLOUR + GRAY_SCANS)
    gray_rgb = Image.open(paths[0]).convert("L").convert("RGB")  # gray stored as RGB: judged, not assumed
    for image in [*paths, gray_rgb]:
        photo = read_photo(image)
        assert photo.lab.shape[-2:] == working_size(*photo.size, 256)
        assert photo.colour == (not is_gray(photo.pixels)), image
    assert sum(read_photo(p).colour for p in paths) == sum(str(p).find("legacy-gray") < 0 for p in paths)


def test_faint_cast_is_gray_and_a_few_coloured_objects_are_colour(data_dir):
    gray = np.asarray(Image.open(_existing(data_dir, COLOUR)[0]).convert("L").convert("RGB"), np.float32)
    cast = np.clip(gray * np.array([1.004, 1.0, 0.996], np.float32), 0, 255)  # |ab| about 1: a scanner's cast
    assert not read_photo(cast.astype(np.uint8)).colour
    spots = gray.copy()
    spots[:100, :120] = (200, 30, 30)  # a red object on 3% of the photo (under 1% counts as noise)
    assert read_photo(spots.astype(np.uint8)).colour


def test_a_photo_read_before_keeps_its_lab_unless_the_working_size_differs(data_dir):
    path = _existing(data_dir, COLOUR)[0]
    photo = read_photo(path)
    assert read_photo(photo) is photo  # same working size: nothing converted again
    bigger = read_photo(photo, 320)
    assert bigger.lab.shape[-2:] == working_size(*photo.size, 320) and bigger.colour == photo.colour
    assert torch.equal(bigger.lab, read_photo(path, 320).lab)
    assert torch.equal(photo.lab, to_working(photo.pixels, 256))


def test_too_small_a_photo_is_refused_naming_it(tmp_path):
    path = tmp_path / "thumb.png"
    Image.new("RGB", (40, 12), (90, 120, 200)).save(path)
    with pytest.raises(ImageTooSmallError, match="thumb.png: image is 40x12; the short side must be at least 16"):
        read_photo(path)
