"""Flags the two text tasks share (tasks.babi, tasks.ptb), defined once here.

    --data_dir    folder with the bAbI / PTB files (else $RUM_TF_DATA_DIR, the cache,
                  or a download; see docs/DATA.md)
    --embed_size  width of the token embedding (bAbI 64, PTB 128)
"""

from absl import flags

DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Folder holding the data files (layouts in docs/DATA.md); unset: $RUM_TF_DATA_DIR, then the "
    "cache ~/.cache/rum_tf, then a checksum-verified download.")
EMBED_SIZE = flags.DEFINE_integer("embed_size", 64, "Width of the token embedding.")

flags.register_validator("embed_size", lambda v: v is not None and v >= 1, "--embed_size must be >= 1")

OWN = (DATA_DIR, EMBED_SIZE)
