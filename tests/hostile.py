"""Builders for the corpus of broken and hostile image files used by the decoder and CLI tests."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header_only(width: int, height: int, mode: int = 2) -> bytes:
    """A valid PNG signature + IHDR that claims width x height, with a tiny (wrong) IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, mode, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + _png_chunk(b"IEND", b""))


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def png_with_chunks(png: bytes, chunks: list[bytes]) -> bytes:
    """`png` with extra chunks inserted right after IHDR (8-byte signature + 25-byte IHDR)."""
    return png[:33] + b"".join(chunks) + png[33:]


def png_streamed(width: int, height: int) -> bytes:
    """A real greyscale PNG of width x height (a horizontal gradient) written row by row, so it is
    made without holding the decoded image in memory."""
    row = b"\x00" + bytes(np.linspace(0, 255, width).astype(np.uint8))
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")


def tiff_ifd_loop() -> bytes:
    """A little-endian TIFF whose first IFD points at itself as the next IFD (a metadata loop)."""
    entries = [(256, 3, 1, 64), (257, 3, 1, 64), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 200), (277, 3, 1, 1), (278, 3, 1, 64), (279, 4, 1, 4096)]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + struct.pack("<I", 8)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + bytes(64)


def tricky_corpus(folder: Path, photo: Path) -> dict[str, Path]:
    """Odd but possibly valid files (polyglots, huge or deeply nested metadata, wrong extensions):
    each must be analysed or refused with one clear line, never crash or hang."""
    folder.mkdir(parents=True, exist_ok=True)
    face = Image.open(photo).convert("RGB")
    jpeg = encode(face, "JPEG", quality=90)
    png = encode(face, "PNG")
    app1 = b"Exif\x00\x00" + bytes(np.random.default_rng(1).integers(0, 255, 65000, dtype=np.uint8))
    many_app = b"".join(b"\xff\xe5" + struct.pack(">H", 18) + b"glowai-nested-%02d" % (i % 100) for i in range(3000))
    files = {
        "polyglot_jpeg_zip.jpg": jpeg + b"PK\x03\x04" + bytes(26) + b"payload.sh#!/bin/sh\nrm -rf /\n",
        "polyglot_png_html.png": png_with_chunks(png, [_png_chunk(b"tEXt", b"Comment\x00<script>alert(1)</script>")]),
        "jpeg_huge_exif.jpg": jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpeg[2:],
        "jpeg_3000_app_markers.jpg": jpeg[:2] + many_app + jpeg[2:],
        "png_5000_text_chunks.png": png_with_chunks(png, [_png_chunk(b"tEXt", b"k%d\x00v" % i) for i in range(5000)]),
        "png_named.jpg": png,
        "jpeg_named.webp": jpeg,
    }
    paths = {}
    for name, data in files.items():
        (folder / name).write_bytes(data)
        paths[name] = folder / name
    return paths


def hostile_corpus(folder: Path, photo: Path) -> dict[str, Path]:
    """Write >= 30 files that must each be refused with one clear line. Returns name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    face = Image.open(photo).convert("RGB")
    jpeg = encode(face, "JPEG", quality=90)
    png = encode(face, "PNG")
    webp = encode(face, "WEBP", quality=80)
    tiny = Image.fromarray(rng.integers(0, 255, (1, 1, 3), dtype=np.uint8))
    files: dict[str, bytes] = {
        "zero_bytes.jpg": b"",
        "one_byte.jpg": b"\xff",
        "text_named.jpg": b"hello, this is not an image\n" * 10,
        "html_named.png": b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>",
        "svg_named.jpg": b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="4000" height="4000">'
                         b'<rect width="100%" height="100%"/></svg>',
        "pdf_named.png": b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n",
        "zip_named.webp": b"PK\x03\x04" + bytes(200),
        "elf_named.jpg": b"\x7fELF" + bytes(300),
        "jpeg_header_only.jpg": jpeg[:20],
        "jpeg_truncated_10pct.jpg": jpeg[: len(jpeg) // 10],
        "jpeg_truncated_half.jpg": jpeg[: len(jpeg) // 2],
        "jpeg_garbage_body.jpg": jpeg[:600] + rng.integers(0, 255, 4000, dtype=np.uint8).tobytes(),
        "png_truncated.png": png[: len(png) // 3],
        "png_bad_crc.png": png[:30] + b"\x00\x00\x00\x00" + png[34:],
        "png_claims_30000x30000.png": png_header_only(30000, 30000),
        "png_claims_100000x1.png": png_header_only(100000, 1),
        "png_claims_0x0.png": png_header_only(0, 0),
        "png_signature_only.png": b"\x89PNG\r\n\x1a\n",
        "webp_truncated.webp": webp[: len(webp) // 4],
        "webp_riff_only.webp": b"RIFF\x00\x00\x00\x00WEBPVP8 ",
        "gif_header_only.gif": b"GIF89a\x10\x00\x10\x00",
        "bmp_claims_huge.bmp": b"BM" + struct.pack("<IHHI", 0, 0, 0, 54)
                               + struct.pack("<IiiHHIIiiII", 40, 50000, 50000, 1, 24, 0, 0, 0, 0, 0, 0),
        "tiff_header_only.tif": b"II*\x00\x08\x00\x00\x00",
        "pixel_1x1.png": encode(tiny, "PNG"),
        "pixel_1x1.jpg": encode(tiny, "JPEG"),
        "strip_4000x2.png": encode(Image.new("RGB", (4000, 2), (200, 150, 120)), "PNG"),
        "random_bytes.jpg": rng.integers(0, 255, 5000, dtype=np.uint8).tobytes(),
        "jpeg_twice_soi.jpg": b"\xff\xd8" * 500,
        "nul_bytes.png": bytes(4096),
        "ico_named.jpg": encode(Image.new("RGB", (16, 16)), "ICO"),
        "psd_magic.jpg": b"8BPS" + bytes(100),
        "svg_renamed.png": b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script>alert(1)</script></svg>',
        "pdf_renamed.jpg": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj<</Type/Catalog>>endobj\n%%EOF\n",
        "polyglot_gif_js.gif": b"GIF89a/*\x00\x00\x00\x00*/=alert(document.domain);//" + bytes(64),
        "progressive_truncated.jpg": (progressive := encode(face, "JPEG", quality=90, progressive=True))[
            : len(progressive) * 3 // 10],
        "png_ztxt_bomb.png": png_with_chunks(png, [_png_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(bytes(64 << 20), 9))]),
        "tiff_ifd_loop.tif": tiff_ifd_loop(),
    }
    paths = {}
    for name, data in files.items():
        path = folder / name
        path.write_bytes(data)
        paths[name] = path
    huge = folder / "pixels_16384x16384.png"  # real pixels (a grey gradient), 268 MP: over the pixel limit
    huge.write_bytes(png_streamed(16384, 16384))
    paths[huge.name] = huge
    big = folder / "oversized_31MB.jpg"
    with open(big, "wb") as handle:  # over the byte limit (the content never gets read)
        handle.write(jpeg)
        handle.seek(31 * 1024 * 1024)
        handle.write(b"\x00")
    paths[big.name] = big
    return paths
