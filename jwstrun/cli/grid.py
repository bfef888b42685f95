"""``jwstrun grid``: one output grid for the mosaics of many filters and programs."""

from __future__ import annotations

import json

import click

from .options import json_option

__all__ = ["register", "grid_command"]


@click.command("grid")
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False),
              metavar="GRID.asdf",
              help="The grid file to write (a gwcs in ASDF); a FITS-WCS header GRID.hdr is "
              "written beside it.")
@click.option("--pixel-scale", type=float, default=None, metavar="ARCSEC",
              help="Pixel scale in arcsec (default: the reference exposure's, as resample).")
@click.option("--pixel-scale-ratio", type=float, default=None, metavar="RATIO",
              help="Pixel scale as a ratio of the reference exposure's (resample's "
              "pixel_scale_ratio).")
@click.option("--rotation", type=float, default=None, metavar="DEG",
              help="Position angle of the grid's +Y axis, degrees East of North (0: North up; "
              "default: the reference exposure's orientation, as resample).")
@click.option("--padding", default="0", show_default=True, metavar="PIXELS|ANGLE",
              help="Margin on every side: pixels (20, 20px) or an angle (2arcsec, 0.1arcmin).")
@click.option("--extend", type=click.Path(dir_okay=False), default=None, metavar="GRID.asdf",
              help="Grow this grid to also cover INPUTS, keeping its tangent point, rotation, "
              "pixel scale and pixel phase (its pixels keep their sky positions).")
@json_option
def grid_command(inputs, output, pixel_scale, pixel_scale_ratio, rotation, padding, extend,
                 as_json):
    """Make one output grid covering INPUTS, for pixel-aligned mosaics.

    INPUTS are _cal or _crf files, glob patterns, directories or Level-3
    association files (their members), of any filters and programs. The grid is
    the one resample would build for all of them together: tangent point at the
    centre of their S_REGION footprints, the orientation and pixel scale of the
    reference exposure (the first input of the finest camera, so F200W and F444W
    together get the short-wavelength pixels), or --pixel-scale / --rotation.
    GRID.asdf is a standard gwcs in ASDF, what resample's output_wcs parameter
    reads: give it to 'jwstrun image3 --grid' (or strun's
    --steps.resample.output_wcs) and every mosaic lands on the same pixels.
    GRID.hdr beside it is the same grid as a FITS-WCS header (text cards) for
    other tools (astropy: WCS(fits.Header.fromtextfile('grid.hdr'))).

    \b
    Examples:
      jwstrun grid out/*_cal.fits -o grid.asdf
      jwstrun grid asn/*_image3_asn.json -o grid.asdf --pixel-scale 0.03 --rotation 0
      jwstrun grid out/ -o grid.asdf --padding 2arcsec --json
      jwstrun grid epoch2/*_cal.fits --extend grid.asdf -o grid.asdf
      jwstrun image3 asn/*_image3_asn.json -o mosaics/ --grid grid.asdf
    """
    from pathlib import Path

    from ..errors import ConfigError
    from ..mosaic.gridfile import header_path, make_grid, read_grid, write_grid

    if Path(output).suffix.lower() != ".asdf":
        raise ConfigError(f"-o {output}: a grid file's name ends in .asdf (e.g. grid.asdf).")
    old = read_grid(extend).shape if extend else None
    grid = make_grid(inputs, pixel_scale=pixel_scale, pixel_scale_ratio=pixel_scale_ratio,
                     rotation=rotation, padding=padding, extend=extend)
    write_grid(grid, output)
    data = {**grid.to_dict(), "header": str(header_path(output)), **grid.meta}
    if old is not None:
        data["extended_from_shape"] = list(old)
    if as_json:
        click.echo(json.dumps(data, indent=1))
        return
    _render(data)


def _render(data: dict) -> None:
    from rich.markup import escape

    from ..console import out

    ny, nx = data["shape"]
    lines = [
        f"{data['path']}: {nx} x {ny} pixels at {data['pixel_scale']:.5f}\"/pixel, "
        f"rotation {data['rotation']:.4f} deg, tangent point RA {data['crval'][0]:.7f} "
        f"Dec {data['crval'][1]:.7f}",
        f"FITS-WCS header: {data['header']}",
    ]
    if "extended_from_shape" in data:
        oy, ox = data["extended_from_shape"]
        sy, sx = data["offset_of_old_grid"]
        lines.append(f"extended from {ox} x {oy} pixels: its pixel (0, 0) is now pixel "
                     f"(x={sx}, y={sy}); {data['n_inputs_added']} input(s) added")
    else:
        lines.append(f"{data['n_inputs']} input(s); reference exposure {data['reference']}")
    for line in lines:
        out(escape(line), soft_wrap=True)


def register(group: click.Group) -> None:
    """Add grid to the jwstrun group."""
    group.add_command(grid_command)
