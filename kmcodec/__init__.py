"""kmcodec: the .kmq palette image codec.

A k-means palette of K colours plus each pixel's palette index bit-packed at
ceil(log2 K) bits, in a container whose size is known exactly in advance
(spec/kmq.md). Importing the package registers the format with Pillow.
"""

from __future__ import annotations

from .codec import Encoded, KmqImage, decode, encode, encode_detailed, pack, psnr, recode
from .errors import (
    BadMagicError,
    BoundError,
    ChecksumError,
    EncodeError,
    FormatError,
    HeaderFieldError,
    ImageInputError,
    KmqError,
    LabelRangeError,
    OutputError,
    PaddingError,
    ParameterError,
    PixelLimitError,
    StreamEndError,
    StreamLengthError,
    StreamStructureError,
    SymbolRangeError,
    TrailingDataError,
    TruncatedError,
    UnsupportedCodingError,
    UnsupportedVersionError,
)
from .files import read, write
from .layout import MAX_K, OVERHEAD, SizeFormula, bits_for_k, size_formula
from .pillow_plugin import register_pillow  # importing the plugin registers .kmq with Pillow
from .shared import ColourHistogram, HistogramFit, fit_histogram, fit_shared_palette

__version__ = "0.1.0"

__all__ = [
    "BadMagicError",
    "BoundError",
    "ChecksumError",
    "ColourHistogram",
    "EncodeError",
    "Encoded",
    "FormatError",
    "HeaderFieldError",
    "HistogramFit",
    "ImageInputError",
    "KmqError",
    "KmqImage",
    "LabelRangeError",
    "MAX_K",
    "OVERHEAD",
    "OutputError",
    "PaddingError",
    "ParameterError",
    "PixelLimitError",
    "SizeFormula",
    "StreamEndError",
    "StreamLengthError",
    "StreamStructureError",
    "SymbolRangeError",
    "TrailingDataError",
    "TruncatedError",
    "UnsupportedCodingError",
    "UnsupportedVersionError",
    "bits_for_k",
    "decode",
    "encode",
    "encode_detailed",
    "fit_histogram",
    "fit_shared_palette",
    "pack",
    "psnr",
    "read",
    "recode",
    "register_pillow",
    "size_formula",
    "write",
]
