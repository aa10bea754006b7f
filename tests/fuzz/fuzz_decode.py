#!/usr/bin/env python3
"""Coverage-guided fuzzing of the decoder with atheris (the `fuzz` extra); see README.md here.

Property: any bytes either decode, or raise a `kmcodec.KmqError` subclass. Whatever
decodes in coding 0 must re-pack (`kmcodec.pack(image.palette, image.labels)`) to
the very same bytes and have exactly the size of spec §6; in coding 1 it must be no
longer than that size, and its palette and labels must survive a round trip
through both codings (the bytes may differ: lanes and tables are the encoder's
choice). Every file must give the same pixels through `to_array`, `labels` and
`iter_rows`. Any other exception is a crash.

A custom mutator repairs, on some mutations, the length (from the header) and the
CRC-32 trailer, so the fuzzer gets past rules 6 and 7 and reaches the padding and
label checks instead of dying on a checksum every time.
"""

from __future__ import annotations

import shlex
import struct
import sys
import zlib

import atheris
import numpy as np  # imported before instrumentation: only kmcodec is instrumented
import PIL.Image  # noqa: F401

with atheris.instrument_imports(include=["kmcodec"]):
    import kmcodec
    from kmcodec import layout

# A pixel limit well below Pillow's keeps each run fast: a 31-byte K = 1 file may
# claim up to this many pixels, and the round trip materialises its labels.
MAX_PIXELS = 1 << 20


def test_one_input(data: bytes) -> None:
    try:
        image = kmcodec.decode(data, max_pixels=MAX_PIXELS)
    except kmcodec.KmqError as exc:
        message = str(exc)
        if not message or "\n" in message:
            raise AssertionError(f"{type(exc).__name__} message must be one non-empty line: {message!r}") from None
        return
    bound = layout.size_formula(image.width, image.height, image.k, image.channels).total_bytes
    if image.coding == layout.CODING_RAW:
        again = kmcodec.pack(image.palette, image.labels)
        if again != bytes(data):
            raise AssertionError(f"round trip changed the bytes: {bytes(data).hex()} -> {again.hex()}")
        if len(data) != bound:
            raise AssertionError("decoded file does not have the size of spec section 6")
    else:
        if len(data) > bound:
            raise AssertionError("decoded coding-1 file is longer than the bound of spec section 6")
        for compress in (False, True):
            back = kmcodec.decode(kmcodec.pack(image.palette, image.labels, compress=compress), max_pixels=None)
            if not np.array_equal(back.labels, image.labels) or not np.array_equal(back.palette, image.palette):
                raise AssertionError(f"coding-1 labels do not survive a round trip (compress={compress})")
    pixels = image.to_array()
    if not np.array_equal(pixels, image.palette[image.labels]):
        raise AssertionError("to_array() differs from palette[labels]")
    if not np.array_equal(np.concatenate(list(image.iter_rows(3))), pixels):
        raise AssertionError("iter_rows() differs from to_array()")


def repair(data: bytes, max_size: int, fix_length: bool) -> bytes:
    """Set the length the header implies (when it is small enough) and recompute the CRC-32."""
    if fix_length and len(data) >= layout.HEADER_SIZE:
        _, _, channels, coding, _, width, height, k, _ = layout.HEADER.unpack_from(data)
        # Coding 1 has no one length: its stream ends where the mutation left it.
        if coding == layout.CODING_RAW and channels in layout.CHANNELS and layout.MIN_K <= k <= layout.MAX_K and width and height:
            total = layout.size_formula(width, height, k, channels).total_bytes
            if total <= max_size:
                data = data[:total].ljust(total, b"\0")
    if len(data) < layout.OVERHEAD:
        return data
    body = data[: -layout.CHECK_SIZE]
    return body + struct.pack("<I", zlib.crc32(body))


def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
    data = atheris.Mutate(data, max_size)
    choice = seed % 4  # 1 in 4 plain, 1 in 4 CRC only, 2 in 4 length and CRC
    if choice == 0:
        return data
    return repair(data, max_size, fix_length=choice >= 2)


def main() -> None:
    # libFuzzer re-runs argv[0] through the shell for -merge=1 and -jobs; make that
    # this interpreter and this script, whatever the PATH and the file's mode.
    argv = [f"{shlex.quote(sys.executable)} {shlex.quote(__file__)}", *sys.argv[1:]]
    atheris.Setup(argv, test_one_input, custom_mutator=custom_mutator)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
