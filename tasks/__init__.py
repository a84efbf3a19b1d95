"""Task binaries: `python -m tasks.<name> --flagfile=flags/<name>/<row>.cfg --output_dir=DIR`.

Each binary owns only what differs between tasks (its data, its output head, its
metric); everything else is `rum_tf.training`.
"""
