"""Sky tiles (jwstrun image3 --tile-size, issue 22): cutting, sizes, the centroid rule;
tests/test_tiles_run.py runs the tiled Stage 3."""

import pytest

from jwstrun.errors import ConfigError
from jwstrun.mosaic.tiles import check_tile_size, cut_tiles, owner, parse_tile_size


def test_tiles_cover_the_grid_once_on_fixed_boundaries():
    tiles = cut_tiles((250, 130), 100, margin=4)
    assert [t.name for t in tiles] == ["t000000", "t000001", "t001000", "t001001",
                                       "t002000", "t002001"]
    covered = [(y, x) for t in tiles for y in range(t.y0, t.y1) for x in range(t.x0, t.x1)]
    assert len(covered) == len(set(covered)) == 250 * 130
    last = tiles[-1]
    assert (last.box, last.margin_box, last.shape) == ((200, 250, 100, 130),
                                                       (196, 250, 96, 130), (50, 30))
    assert tiles[0].margin_box == (0, 104, 0, 104)
    assert tiles[3].core_in_margin == (slice(4, 104), slice(4, 34))
    assert tiles[3].header()["TILEID"][0] == "t001001"


def test_tile_size_in_pixels_or_an_angle():
    assert parse_tile_size("512") == parse_tile_size(512) == parse_tile_size("512px") == 512
    assert parse_tile_size("2arcmin", pixel_scale=0.03) == 4000
    assert parse_tile_size("3\"", pixel_scale=0.031) == 97
    assert parse_tile_size("0.01arcsec", pixel_scale=0.03) == 0
    with pytest.raises(ConfigError, match="not a size"):
        parse_tile_size("big")


def test_tile_size_below_a_pixel_or_above_the_grid_is_refused():
    with pytest.raises(ConfigError) as small:
        check_tile_size(0, (300, 200), given="0.01arcsec")
    assert str(small.value) == ("tile_size=0.01arcsec: a tile must be at least 1 pixel of "
                                "the grid. Give a larger tile size.")
    with pytest.raises(ConfigError) as large:
        check_tile_size(301, (300, 200))
    assert str(large.value) == ("tile_size=301 is 301 pixels, larger than the grid (200 x 300 "
                                "pixels). Give a smaller tile size, or run without one.")


def test_every_position_has_one_owner():
    assert owner(99.49, 0.0, 100, (250, 130)) == (0, 0)
    assert owner(99.5, 0.0, 100, (250, 130)) == (1, 0)
    assert owner(-3.0, 140.0, 100, (250, 130)) == (0, 1)
    assert owner(260.0, 129.6, 100, (250, 130)) == (2, 1)


def test_context_bits_number_the_association_members():
    """A tile reads only the exposures that overlap it; its CON numbers them as the
    single-shot mosaic does (the association's members), across 32-bit planes."""
    import numpy as np

    from jwstrun.mosaic.tiles import global_context

    con = np.array([[[0b01, 0b10, 0b11, 0]]], dtype=np.int32)  # 2 inputs, 4 pixels
    planes = global_context(con, member_index=[1, 33], n_members=40)
    assert planes.shape == (2, 1, 4)
    assert planes[0, 0].tolist() == [0b10, 0, 0b10, 0]
    assert planes[1, 0].tolist() == [0, 0b10, 0b10, 0]
