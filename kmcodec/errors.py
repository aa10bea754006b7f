"""One exception family, so callers can catch ``KmqError`` and know every failure.

Each subclass names one rule; messages carry the field, the value found and the
value allowed, on one line.
"""

from __future__ import annotations


class KmqError(Exception):
    """Base class for every error kmcodec raises on bad input or a failed write."""


class FormatError(KmqError, ValueError):
    """The bytes are not a valid .kmq file (base of all decoder rejections)."""


class BadMagicError(FormatError):
    """The file does not start with the .kmq magic bytes."""


class UnsupportedVersionError(FormatError):
    """The format version is one this decoder does not know."""


class UnsupportedCodingError(FormatError):
    """The payload coding field names a coding this decoder does not know."""


class HeaderFieldError(FormatError):
    """A header field is outside its valid range (spec section 'Header')."""


class PixelLimitError(FormatError):
    """width x height exceeds the caller's pixel limit (decompression-bomb guard)."""


class TruncatedError(FormatError):
    """The file is shorter than the size its header implies."""


class TrailingDataError(FormatError):
    """The file is longer than the size its header implies."""


class ChecksumError(FormatError):
    """The CRC-32 stored at the end does not match the bytes before it."""


class LabelRangeError(FormatError):
    """A packed label is not below K."""


class PaddingError(FormatError):
    """The zero padding bits after the last label are not all zero."""


class EncodeError(KmqError, ValueError):
    """The encoder cannot encode this input with these parameters."""


class ParameterError(EncodeError):
    """A parameter (k, n_init, seed, ...) is outside its valid range."""


class ImageInputError(EncodeError):
    """The input is not an image the encoder accepts (unreadable, wrong shape or dtype)."""


class OutputError(KmqError, OSError):
    """An output file cannot be written (exists without --force, unwritable directory)."""


class BoundError(FormatError):
    """A coding-1 file is longer than the coding-0 file of the same header (the formula bound)."""


class StreamStructureError(FormatError):
    """A coding-1 label stream is malformed: a bad method, table, lane state or word count."""


class StreamLengthError(FormatError):
    """A length or count in a coding-1 label stream disagrees with the header or the stream's size."""


class StreamEndError(FormatError):
    """A coding-1 label stream ends early, or leaves bytes or state over at its end."""


class SymbolRangeError(FormatError):
    """A coding-1 symbol or label decodes out of range (not below K, or past the pixels it may name)."""


class PaletteFileError(ImageInputError):
    """A palette file (.gpl, .kmq, PNG-8, GIF, .json) is malformed, empty or out of range."""
