"""Audio in and out of omnivox: decode uploads, encode answers, resample and chunk PCM.

Pure CPU work on numpy arrays and bytes, through PyAV (FFmpeg) and soxr. Nothing
here knows HTTP, JSON, the OpenAI wire format or any engine.
"""

from omnivox.audio.pcm import S16_BYTES_PER_SAMPLE

# The submodules import these constants from the package, so they are bound first.
OUTPUT_SAMPLE_RATE = 24_000  # Hz; every output format is mono signed 16-bit at this rate
OUTPUT_BYTES_PER_S = OUTPUT_SAMPLE_RATE * S16_BYTES_PER_SAMPLE  # the output PCM, mono s16le
INPUT_SAMPLE_RATE = 16_000  # Hz; what decoded input is resampled to unless asked otherwise
OUTPUT_FORMATS = ("wav", "mp3", "flac", "opus", "aac", "pcm16")

from omnivox.audio.chunk import PcmChunker  # noqa: E402
from omnivox.audio.decode import decode_audio  # noqa: E402
from omnivox.audio.encode import (  # noqa: E402
    ENCODERS,
    MIME_TYPES,
    AudioEncoder,
    encode_audio,
    make_encoder,
)
from omnivox.audio.pcm import (  # noqa: E402
    StreamResampler,
    duration_s,
    float_to_s16le,
    resample,
    s16le_to_float,
)

__all__ = [
    "ENCODERS",
    "INPUT_SAMPLE_RATE",
    "MIME_TYPES",
    "OUTPUT_BYTES_PER_S",
    "OUTPUT_FORMATS",
    "OUTPUT_SAMPLE_RATE",
    "AudioEncoder",
    "PcmChunker",
    "StreamResampler",
    "decode_audio",
    "duration_s",
    "encode_audio",
    "float_to_s16le",
    "make_encoder",
    "resample",
    "s16le_to_float",
]
