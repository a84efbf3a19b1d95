"""The task binaries' configuration, above the harness (`rum_tf.training` never imports it).

options  the option kinds (default, help, check, resume-neutrality) and the shared flag sections
models   the --model registry: name -> recurrent layer, with the options each model declares
flags    TaskConfig: a binary's sections become its absl flags and, parsed once, one frozen config
"""
