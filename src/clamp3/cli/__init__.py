"""The ``clamp3`` command line: one sub-command per pipeline stage.

Each module here defines ``register(subparsers)``, which adds its sub-commands and points
each at a handler that parses nothing itself: it calls a library function. No logic lives here.
"""
