"""The options the two text tasks share (tasks.babi, tasks.ptb), declared once here."""

import dataclasses

from rum_tf.config import flags


@dataclasses.dataclass(frozen=True)
class Text:
    data_dir: str | None = flags.string(
        None,
        "Folder holding the data files (layouts in docs/DATA.md); unset: $RUM_TF_DATA_DIR, then the cache "
        "~/.cache/rum_tf, then a checksum-verified download.",
        resume_neutral=True,
    )  # it only says where the checksum-verified files are
    embed_size: int = flags.integer(64, "Width of the token embedding.", minimum=1)
