"""rum_tf: the Rotational Unit of Memory for TensorFlow 2 / Keras 3."""

import setuptools

setuptools.setup(
    name="rum_tf",
    version="0.1.0",
    description="Rotational Unit of Memory (RUM) for TensorFlow 2 / Keras 3",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    # The library only: tasks/ (the binaries, reproduce) and flags/ are checkout tooling, run
    # from the checkout's root as `python -m tasks.<name>`.
    packages=setuptools.find_packages(include=["rum_tf", "rum_tf.*"]),
    # 3.11 is the version tested; the checkout's tooling needs it (tasks/report.py reads
    # flags/targets.toml with tomllib, in the standard library from 3.11).
    python_requires=">=3.11",
    install_requires=[
        "tensorflow>=2.16",
        # rum_tf.compat uses private Keras modules: the minor versions the suite passed on.
        "keras>=3.15,<3.16",
        "tensorflow-datasets",
        "absl-py",
        "numpy",
        # tensorflow-datasets imports it to build datasets but does not always
        # install it.
        "importlib_resources",
        # The training harness: TensorBoard events and the learning-curve PNG.
        "tensorboard",
        "matplotlib",
    ],
    extras_require={
        # jax runs the cell and layer tests a second time under KERAS_BACKEND=jax; ruff is the
        # linter and formatter tests/run.sh runs first; pytest-xdist spreads the suite over the cores.
        "test": ["pytest", "pytest-xdist>=3.2", "jax", "ruff"],
    },
)
