"""The layout of a JPEG file, read from its markers, to tell a whole file from a damaged one.

libjpeg (Pillow's decoder) takes a marker met inside a scan's data (the end-of-image marker of a
truncated file with one appended, or of a file whose header declares more pixels than its data
holds) for the scan's end: it warns, fills every block it did not get with zeros, which decode to
flat grey (128), and reports success; Pillow drops libjpeg's warnings. So a damaged JPEG loaded as
a photo that was mostly grey, and a scene was dreamed from it. Only a file that ends with no
end-of-image marker raises (``image file is truncated``): the decoder asked for data that was not
there. :func:`jpeg_layout` finds where the scans' data ends, so that a reader can hand the decoder
the file without its end marker, the data followed by :data:`SCAN_PADDING`, and let a missing
block raise (see :mod:`dreamer.pipeline.inputs`). That works for a file of one scan (baseline, what
cameras write): the decoder outputs its last row of blocks as soon as it has decoded it. A
progressive file's scans refine one another, so the decoder reads to the end marker before it
outputs anything: without one it always raises.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["JpegLayout", "jpeg_layout", "is_jpeg", "SCAN_PADDING"]

SCAN_PADDING = bytes(16)
"""Zero bytes to put after a scan's data in place of the end marker: the Huffman decoder reads up to
57 bits ahead of the codes it decodes, and without them it waits, at the end of a whole file too,
for data that never comes. A file missing more blocks than these 128 bits can fake still raises;
150 whole files of every size, quality, subsampling and restart interval decoded to the same
pixels with them (tests/test_inputs.py)."""

# Start-of-frame markers (C4 defines Huffman tables, C8 is reserved, CC defines arithmetic coding).
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_PROGRESSIVE = {0xC2, 0xC6, 0xCA, 0xCE}
_SOS, _EOI = 0xDA, 0xD9


@dataclass(frozen=True)
class JpegLayout:
    """What the markers of a JPEG file say.

    ``width``, ``height``: the pixels its frame header declares; ``mcu``: (w, h) pixels of one
    minimum coded unit (the blocks a scan codes together, 8 or 16 pixels a side); ``scans``: how
    many scans it holds (1 for a baseline file, several for a progressive one); ``end``: the byte
    offset of the end-of-image marker that follows the last scan's data, or None when the file
    ends first (a truncated file, which the decoder refuses itself)."""

    width: int
    height: int
    mcu: tuple[int, int]
    scans: int
    progressive: bool
    end: int | None


def is_jpeg(head: bytes) -> bool:
    """Whether a file beginning with ``head`` is a JPEG (its start-of-image marker, then a marker)."""
    return head[:3] == b"\xff\xd8\xff"


def jpeg_layout(data: bytes) -> JpegLayout | None:
    """The :class:`JpegLayout` of the JPEG file ``data``, or None when its markers cannot be
    walked to a frame header and a scan (not a JPEG, or a damage the decoder reports itself)."""
    if not is_jpeg(data):
        return None
    n, pos, scans, frame = len(data), 2, 0, None
    while pos + 1 < n:
        if data[pos] != 0xFF:
            return None  # bytes between segments: not ours to judge
        marker = data[pos + 1]
        if marker == 0xFF:  # a fill byte before a marker
            pos += 1
            continue
        if marker == _EOI:
            return _layout(frame, scans, pos)
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        if pos + 4 > n:
            break
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if length < 2:
            return None
        if marker in _SOF:
            frame = _frame(marker, data[pos + 4:pos + 2 + length])
            if frame is None:
                return None
        pos += 2 + length
        if marker == _SOS:
            scans += 1
            pos = _scan_end(data, pos)
    return _layout(frame, scans, None)


def _scan_end(data: bytes, pos: int) -> int:
    """The offset of the first marker after the entropy-coded data starting at ``pos`` (a 0xFF
    there is followed by 0x00, a stuffed byte, or by a restart marker D0-D7), or len(data)."""
    n = len(data)
    while True:
        i = data.find(b"\xff", pos)
        if i < 0 or i + 1 >= n:
            return n
        following = data[i + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7:
            pos = i + 2
        elif following == 0xFF:  # fill bytes before the marker
            pos = i + 1
        else:
            return i


def _frame(marker: int, body: bytes) -> tuple | None:
    """(width, height, mcu, progressive) from a start-of-frame segment's body, or None."""
    if len(body) < 6:
        return None
    height, width, count = int.from_bytes(body[1:3], "big"), int.from_bytes(body[3:5], "big"), body[5]
    if count == 0 or len(body) < 6 + 3 * count:
        return None
    sampling = [body[6 + 3 * i + 1] for i in range(count)]
    h = max(s >> 4 for s in sampling) if count > 1 else 1
    v = max(s & 15 for s in sampling) if count > 1 else 1
    return width, height, (8 * max(h, 1), 8 * max(v, 1)), marker in _PROGRESSIVE


def _layout(frame, scans: int, end: int | None) -> JpegLayout | None:
    if frame is None or scans == 0:
        return None
    width, height, mcu, progressive = frame
    return JpegLayout(width, height, mcu, scans, progressive, end)
