"""Workflows: sequences over several stages (export a model to a target, the validation ladder, calibration,
the train → export → validate pipeline). They sit above every stage, beside the command-line face, which calls
them; no stage imports them.
"""
