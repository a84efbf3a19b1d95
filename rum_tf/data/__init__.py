"""Data for the four tasks: synthetic generators (copying, recall), bAbI and char-level PTB.

``files`` is the one module that finds, downloads and verifies data files. The TFDS
builders (``rum_babi``, ``rum_char_ptb``) are registered by ``import rum_tf.data.tfds_builders``;
they are not imported here so that the plain loaders do not pay for importing TFDS.
"""

from rum_tf.data import babi, copying, files, ptb, recall
from rum_tf.data.files import DataError

__all__ = ["DataError", "babi", "copying", "files", "ptb", "recall"]
