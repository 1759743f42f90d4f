"""Photos and depth maps of any size, mode and aspect ratio, written with PIL in tmp_path."""

import io
import re

import numpy as np
import pytest
import torch
from PIL import Image

from dreamer.pipeline.inputs import PAD_VALUE, compute_fit, load_depth, load_depth_with_mask, load_image


def save(tmp_path, name, array_or_image, **kwargs):
    path = tmp_path / name
    im = array_or_image if isinstance(array_or_image, Image.Image) else Image.fromarray(array_or_image)
    im.save(path, **kwargs)
    return path


def test_one_pixel_image(tmp_path):
    path = save(tmp_path, "one.png", Image.new("RGB", (1, 1), (255, 0, 0)))
    for fit in ("crop", "pad"):
        loaded = load_image(path, 64, 48, fit=fit)
        assert loaded.image.shape == (48, 64, 3) and loaded.image.dtype == torch.float32
    crop = load_image(path, 64, 48, fit="crop")
    assert torch.allclose(crop.image, torch.tensor([1.0, 0.0, 0.0]).expand(48, 64, 3), atol=1e-4)
    assert crop.outpaint_mask is None


def test_wide_strip_crop_keeps_the_centre_and_pad_masks_the_rest(tmp_path):
    strip = np.zeros((200, 3000, 3), np.uint8)
    strip[:, :1400] = (0, 0, 255)
    strip[:, 1400:1600] = (0, 255, 0)  # the centre 200 columns: exactly what a square crop keeps
    strip[:, 1600:] = (255, 0, 0)
    path = save(tmp_path, "strip.png", strip)
    crop = load_image(path, 64, 64, fit="crop")
    assert torch.allclose(crop.image[:, 4:-4], torch.tensor([0.0, 1.0, 0.0]).expand(64, 56, 3), atol=0.02)
    pad = load_image(path, 64, 64, fit="pad")
    content_rows = round(200 * 64 / 3000)
    assert pad.outpaint_mask.shape == (64, 64) and pad.outpaint_mask.dtype == torch.bool
    assert int((~pad.outpaint_mask).sum()) == 64 * content_rows
    assert torch.all(pad.image[pad.outpaint_mask] == PAD_VALUE)
    x0, y0, x1, y1 = pad.transform.target_box
    assert (x0, x1) == (0, 64) and y1 - y0 == content_rows


def test_large_image_and_intrinsics(tmp_path):
    path = save(tmp_path, "big.jpg", np.full((1500, 2000, 3), 128, np.uint8), quality=95)
    loaded = load_image(path, 512, 384)
    assert loaded.image.shape == (384, 512, 3)
    K = torch.tensor([[1000.0, 0, 1000.0], [0, 1000.0, 750.0], [0, 0, 1]])
    K2 = loaded.transform.intrinsics(K)
    assert torch.allclose(K2, torch.tensor([[256.0, 0, 256.0], [0, 256.0, 192.0], [0, 0, 1]]), atol=1e-3)


def test_modes_grayscale_palette_rgba(tmp_path):
    gray = save(tmp_path, "gray.png", np.full((10, 10), 51, np.uint8))
    assert torch.allclose(load_image(gray, 8, 8).image, torch.full((8, 8, 3), 0.2), atol=1e-3)

    pal = Image.new("P", (10, 10), 1)
    pal.putpalette([0, 0, 0, 255, 255, 0] + [0] * 762)
    pal.info["transparency"] = 0
    assert torch.allclose(load_image(save(tmp_path, "pal.png", pal), 8, 8).image,
                          torch.tensor([1.0, 1.0, 0.0]).expand(8, 8, 3), atol=1e-3)

    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:, :8, 3] = 255  # left half opaque red, right half fully transparent
    out = load_image(save(tmp_path, "rgba.png", rgba), 16, 16).image
    assert torch.allclose(out[:, :6], torch.tensor([1.0, 0.0, 0.0]).expand(16, 6, 3), atol=0.01)
    assert torch.allclose(out[:, 10:], torch.full((16, 6, 3), PAD_VALUE), atol=0.01)

    bw = save(tmp_path, "bw.png", Image.new("1", (8, 8), 1))
    assert torch.allclose(load_image(bw, 8, 8).image, torch.ones(8, 8, 3))
    cmyk = save(tmp_path, "cmyk.jpg", Image.new("CMYK", (8, 8), (0, 0, 0, 0)))
    assert load_image(cmyk, 8, 8).image.min() > 0.95


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    arr = np.full((8, 8), 32768, np.uint16)
    arr[:, 4:] = 65535
    path = save(tmp_path, "g16.png", arr)
    assert Image.open(path).mode.startswith("I")
    out = load_image(path, 8, 8).image
    assert torch.allclose(out[:, :3], torch.full((8, 3, 3), 0.5), atol=1e-3)
    assert torch.allclose(out[:, 5:], torch.ones(8, 3, 3), atol=1e-3)


def test_exif_orientation_is_applied(tmp_path):
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :20] = (255, 0, 0)  # stored left half red, right half blue
    stored[:, 20:] = (0, 0, 255)
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display": the stored left edge becomes the top edge
    path = save(tmp_path, "rotated.jpg", im, exif=exif, quality=95)
    out = load_image(path, 16, 32).image  # displayed as a 20x40 portrait: same aspect as 16x32
    assert out.shape == (32, 16, 3)
    assert out[:12, :, 0].mean() > 0.9 and out[:12, :, 2].mean() < 0.1   # top: red
    assert out[20:, :, 2].mean() > 0.9 and out[20:, :, 0].mean() < 0.1   # bottom: blue


def test_not_an_image(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("this is not a picture\n")
    with pytest.raises(ValueError, match="notes.png"):
        load_image(text, 64, 64)
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "missing.png", 64, 64)
    with pytest.raises(ValueError, match="folder"):
        load_image(tmp_path, 64, 64)
    ok = save(tmp_path, "ok.png", Image.new("RGB", (4, 4)))
    with pytest.raises(ValueError, match="fit"):
        load_image(ok, 8, 8, fit="stretch")
    with pytest.raises(ValueError, match="width"):
        load_image(ok, 0, 8)


def test_compute_fit_boxes():
    fit = compute_fit(300, 100, 64, 64, "crop")
    assert fit.source_box == pytest.approx((100.0, 0.0, 200.0, 100.0)) and fit.target_box == (0, 0, 64, 64)
    fit = compute_fit(100, 300, 64, 64, "pad")
    assert fit.target_box == (21, 0, 42, 64) and int(fit.padding_mask().sum()) == 64 * 64 - 21 * 64


# ---- depth ---------------------------------------------------------------------------------------

def _photo_and_depth(tmp_path, w=120, h=80, depth_w=60, depth_h=40):
    """A photo whose red channel and a half-resolution depth map both encode the x coordinate."""
    u = (np.arange(w) + 0.5) / w
    photo = np.zeros((h, w, 3), np.uint8)
    photo[..., 0] = np.round(255 * u)[None, :]
    ud = (np.arange(depth_w) + 0.5) / depth_w
    depth = np.repeat((1.0 + ud)[None, :], depth_h, axis=0).astype(np.float32)
    return save(tmp_path, "photo.png", photo), depth


@pytest.mark.parametrize("fit", ["crop", "pad"])
def test_depth_gets_the_photo_geometry(tmp_path, fit):
    photo_path, depth = _photo_and_depth(tmp_path)
    np.save(tmp_path / "depth.npy", depth)
    loaded = load_image(photo_path, 48, 48, fit=fit)
    d, valid = load_depth_with_mask(tmp_path / "depth.npy", 48, 48, fit=fit, like=loaded)
    assert d.shape == (48, 48) and d.dtype == torch.float32 and bool((d > 0).all())
    known = valid if loaded.outpaint_mask is None else valid & ~loaded.outpaint_mask
    assert torch.equal(valid, torch.ones_like(valid) if fit == "crop" else ~loaded.outpaint_mask)
    # depth - 1 and the red channel both encode the source x coordinate: they agree pixel by pixel
    # (within the depth map's resolution, 1/60).
    assert (d[known] - 1.0 - loaded.image[..., 0][known]).abs().max() < 0.03
    assert torch.equal(load_depth(tmp_path / "depth.npy", 48, 48, fit=fit, like=loaded), d)


def test_depth_png16_millimetres_with_unknown_zeros(tmp_path):
    mm = np.full((20, 20), 2500, np.uint16)
    mm[5:8, 5:8] = 0  # unknown
    path = save(tmp_path, "depth16.png", mm)
    d, valid = load_depth_with_mask(path, 20, 20)
    assert torch.allclose(d, torch.full((20, 20), 2.5))
    assert int((~valid).sum()) == 9


def test_depth_validation(tmp_path):
    bad = np.ones((10, 10), np.float32)
    bad[3, 3] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(ValueError, match="non-finite"):
        load_depth(tmp_path / "nan.npy", 8, 8)
    bad[3, 3] = -1.0
    np.save(tmp_path / "neg.npy", bad)
    with pytest.raises(ValueError, match="<= 0"):
        load_depth(tmp_path / "neg.npy", 8, 8)
    np.save(tmp_path / "cube.npy", np.ones((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match=r"\[H,W\]"):
        load_depth(tmp_path / "cube.npy", 8, 8)
    save(tmp_path, "zeros16.png", np.zeros((8, 8), np.uint16))
    with pytest.raises(ValueError, match="unknown"):
        load_depth(tmp_path / "zeros16.png", 8, 8)
    save(tmp_path, "eight.png", np.full((8, 8), 9, np.uint8))
    with pytest.raises(ValueError, match="8-bit"):
        load_depth(tmp_path / "eight.png", 8, 8)
    (tmp_path / "junk.npy").write_text("nope")
    with pytest.raises(ValueError, match="npy"):
        load_depth(tmp_path / "junk.npy", 8, 8)
    photo_path, _ = _photo_and_depth(tmp_path)
    np.save(tmp_path / "square.npy", np.ones((50, 50), np.float32))
    with pytest.raises(ValueError, match="aspect"):
        load_depth(tmp_path / "square.npy", 48, 48, like=load_image(photo_path, 48, 48))


def test_depth_exr(tmp_path):
    try:
        import OpenEXR
    except ImportError:
        (tmp_path / "d.exr").write_bytes(b"\x76\x2f\x31\x01" + b"\0" * 64)
        with pytest.raises(ValueError, match="OpenEXR"):
            load_depth(tmp_path / "d.exr", 8, 8)
        return
    depth = np.linspace(1.0, 3.0, 16 * 16, dtype=np.float32).reshape(16, 16)
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with OpenEXR.File(header, {"Z": depth}) as f:
        f.write(str(tmp_path / "d.exr"))
    assert torch.allclose(load_depth(tmp_path / "d.exr", 16, 16), torch.from_numpy(depth))


def png_header_only(path, width, height, mode_bits=(8, 2)):
    """A PNG whose header declares ``width`` x ``height`` but that holds almost no data (the
    shape of a decompression bomb or a damaged file): only the header may be read."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, mode_bits[0], mode_bits[1], 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def test_photo_size_is_checked_from_the_header_before_decoding(tmp_path):
    big = png_header_only(tmp_path / "huge.png", 10_000, 10_000)
    with pytest.raises(ValueError, match=r"huge.png.*10000x10000.*limit of 64 megapixels.*--allow-large"):
        load_image(big, 64, 64)
    bomb = png_header_only(tmp_path / "bomb.png", 60_000, 60_000)
    with pytest.raises(ValueError, match="bomb.png"):
        load_image(bomb, 64, 64, max_pixels=None)  # Pillow's own limit still refuses it
    depth = png_header_only(tmp_path / "depth.png", 9_000, 9_000, (16, 0))
    with pytest.raises(ValueError, match=r"depth.png.*depth map is 9000x9000"):
        load_depth(depth, 64, 64)
    small = save(tmp_path, "small.png", np.zeros((30, 40, 3), np.uint8))
    with pytest.raises(ValueError, match="limit of 0.001 megapixels"):
        load_image(small, 8, 8, max_pixels=1000)


def test_a_large_photo_is_decoded_at_a_reduced_size(tmp_path):
    """A 3200x2400 JPEG fitted to 128x96 is drafted at 1/8 by the JPEG decoder and box-reduced, so
    no full-size float copy is ever made (numpy's allocations are what tracemalloc sees; the old
    code's float32 copy of this photo alone was 92 MB) and the result matches a full decode."""
    import tracemalloc

    x = np.linspace(0, 255, 3200, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, 2400, dtype=np.float32)[:, None]
    arr = np.empty((2400, 3200, 3), np.uint8)
    arr[..., 0], arr[..., 1], arr[..., 2] = x, y, (x + y) / 2
    path = save(tmp_path, "large.jpg", arr, quality=95)
    tracemalloc.start()
    try:
        loaded = load_image(path, 128, 96)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8e6, f"peak {peak / 1e6:.1f} MB of numpy/Python allocations"
    assert loaded.transform.source_width == 3200 and loaded.transform.source_height == 2400
    expected = torch.from_numpy(np.asarray(Image.fromarray(arr).resize((128, 96), Image.Resampling.LANCZOS),
                                           dtype=np.float32) / 255.0)
    assert (loaded.image - expected).abs().mean() < 0.01


def test_depth_npy_header_is_checked_before_reading(tmp_path):
    claim = tmp_path / "claims80gb.npy"
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 1), np.float32))
    header["shape"] = (100_000, 200_000)  # 2e10 float32 values: 80 GB
    with open(claim, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(b"\0" * 16)
    assert claim.stat().st_size < 200
    with pytest.raises(ValueError, match=r"claims80gb.npy.*100000x200000.*limit of 64 megapixels"):
        load_depth(claim, 8, 8)
    with pytest.raises(ValueError, match=r"claims80gb.npy.*truncated"):
        load_depth(claim, 8, 8, max_pixels=None)
    np.save(tmp_path / "complex.npy", np.ones((10, 10), np.complex64))
    with pytest.raises(ValueError, match=r"complex.npy.*real numbers.*complex64"):
        load_depth(tmp_path / "complex.npy", 8, 8)
    np.save(tmp_path / "bool.npy", np.ones((10, 10), bool))
    with pytest.raises(ValueError, match="dtype bool"):
        load_depth(tmp_path / "bool.npy", 8, 8)


def _jpeg(arr, **kwargs) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", **kwargs)
    return buf.getvalue()


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload


def _with_size(data: bytes, width: int, height: int) -> bytes:
    """``data`` with its frame header declaring ``width`` x ``height`` pixels."""
    from dreamer.pipeline.jpeg import _SOF

    pos = 2
    while data[pos + 1] not in _SOF:
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
    return data[:pos + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + data[pos + 9:]


def _decoded(path) -> np.ndarray:
    """The pixels of an image file as load_image decodes them (before fitting them to the canvas)."""
    from dreamer.pipeline.inputs import _decode, _open

    im, layout = _open(path)
    with im:
        _decode(im, path, layout)
        return np.asarray(im.convert("RGB"))


def test_a_damaged_jpeg_is_refused_not_read_as_a_grey_photo(tmp_path):
    """libjpeg takes a marker inside a scan's data for the scan's end, fills the blocks it did not
    get with flat grey and reports success: a JPEG cut short with its end marker put back, or whose
    header declares more pixels than its data holds, loaded as a mostly grey photo that a scene was
    dreamed from. Such files are refused naming the file; whole ones load exactly as before, however
    large their header (64 KB segments of EXIF, ICC and comments) or whatever follows their end."""
    from dreamer.pipeline.jpeg import jpeg_layout

    rng = np.random.default_rng(0)
    arr = (rng.random((96, 128, 3)) * 255).astype(np.uint8)
    arr[:, :64] = (200, 40, 30)
    for progressive in (False, True):
        whole = _jpeg(arr, quality=90, progressive=progressive)
        layout = jpeg_layout(whole)
        assert (layout.scans == 1) != progressive and layout.end == len(whole) - 2
        scan = whole.index(b"\xff\xda")
        header = b"".join([_segment(0xE1, b"Exif\0\0" + bytes(65000))] * 20 + [_segment(0xE2, bytes(65000)),
                                                                             _segment(0xFE, b"x" * 65000)])
        kept = {"whole": whole, "large header": whole[:2] + header + whole[2:], "trailer": whole + b"\0garbage" * 999}
        plain = np.asarray(Image.open(io.BytesIO(whole)).convert("RGB"))
        (tmp_path / "whole.jpg").write_bytes(whole)
        expected = load_image(tmp_path / "whole.jpg", 64, 48).image  # drafted at 1/2 by the decoder
        damaged = {"declares 4x the pixels": _with_size(whole, 512, 384),
                   "cut, no end marker": whole[:scan + (len(whole) - scan) // 2]}
        if not progressive:  # a progressive file cut in a later scan loads at the quality its first scans give
            damaged.update((f"cut at {f:.0%}, end marker put back", whole[:scan + int((len(whole) - scan) * f)]
                            + b"\xff\xd9") for f in (0.05, 0.5, 0.9))
        for name, data in damaged.items():
            path = tmp_path / f"{name}.jpg"
            path.write_bytes(data)
            with Image.open(path) as im:  # Pillow alone: grey, "loaded"
                if "end marker put back" in name or "declares" in name:
                    im.load()
                    assert (np.asarray(im)[-8:, -8:] == 128).all(), name  # the last block at least
            for size in ((64, 48), (16, 12)):  # whole, and at 1/8 by the decoder's draft mode
                refused = (f"^{re.escape(str(path))} could not be decoded as an image: .*(data ends before|flat grey "
                           f"\\(128\\)).*use a whole copy of the photo")
                with pytest.raises(ValueError, match=refused):
                    load_image(path, *size)
        for name, data in kept.items():
            (tmp_path / "photo.jpg").write_bytes(data)
            assert np.array_equal(_decoded(tmp_path / "photo.jpg"), plain), (progressive, name)
            assert torch.equal(load_image(tmp_path / "photo.jpg", 64, 48).image, expected), (progressive, name)
    buf = io.BytesIO()  # a phone's multi-picture file (MPO): JPEGs one after the other, the first one read
    Image.fromarray(arr).save(buf, "MPO", save_all=True, append_images=[Image.fromarray(arr[::-1])])
    (tmp_path / "photo.mpo").write_bytes(buf.getvalue())
    first = np.asarray(Image.open(tmp_path / "photo.mpo").convert("RGB"))
    assert np.array_equal(_decoded(tmp_path / "photo.mpo"), first)


def test_whole_jpegs_decode_to_the_same_pixels_without_their_end_marker(tmp_path):
    """The reader hands the decoder a one-scan JPEG without its end marker, its data followed by
    zero bytes (dreamer.pipeline.jpeg.SCAN_PADDING), so that a missing block raises: every whole
    file must still decode to the pixels Pillow gives it, whatever its size (MCUs cut by the edge),
    quality, chroma subsampling, restart interval or colour mode."""
    from dreamer.pipeline.jpeg import jpeg_layout

    rng = np.random.default_rng(1)
    for i in range(150):
        h, w = (int(v) for v in rng.integers(1, 300, 2))
        x = np.linspace(0, 255, w)[None, :, None]
        arr = (rng.random((h, w, 3)) * 255 if i % 3 == 0 else np.broadcast_to(x, (h, w, 3)) if i % 3 == 1
               else np.full((h, w, 3), 128.0)).astype(np.uint8)
        kwargs = dict(quality=int(rng.integers(5, 101)), subsampling=int(rng.integers(0, 3)))
        if i % 7 == 0:
            kwargs["restart_marker_blocks"] = 3
        data = _jpeg(np.asarray(Image.fromarray(arr).convert("L")) if i % 5 == 0 else arr, **kwargs)
        layout = jpeg_layout(data)
        assert layout.scans == 1 and layout.end == len(data) - 2 and (layout.width, layout.height) == (w, h)
        (tmp_path / "photo.jpg").write_bytes(data)
        assert np.array_equal(_decoded(tmp_path / "photo.jpg"), np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))


def test_the_layout_of_a_jpeg_from_its_markers():
    """Frame size, the minimum coded unit of each chroma subsampling (4:4:4 one 8x8 block, 4:2:2
    16x8, 4:2:0 16x16, grey 8x8), the scans, and where the scans' data ends; not a JPEG: None."""
    from dreamer.pipeline.jpeg import jpeg_layout

    arr = (np.random.default_rng(0).random((40, 72, 3)) * 255).astype(np.uint8)
    for subsampling, mcu in ((0, (8, 8)), (1, (16, 8)), (2, (16, 16))):
        data = _jpeg(arr, subsampling=subsampling)
        layout = jpeg_layout(data)
        assert (layout.width, layout.height, layout.mcu, layout.scans) == (72, 40, mcu, 1)
        assert not layout.progressive and data[layout.end:] == b"\xff\xd9"
    assert jpeg_layout(_jpeg(arr[..., 0])).mcu == (8, 8)
    progressive = jpeg_layout(_jpeg(arr, progressive=True))
    assert progressive.progressive and progressive.scans > 1
    whole = _jpeg(arr)
    assert jpeg_layout(whole[:len(whole) // 2]).end is None  # cut: the scan runs to the end of the file
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    assert jpeg_layout(buf.getvalue()) is None and jpeg_layout(b"") is None
