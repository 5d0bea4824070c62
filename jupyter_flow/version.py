"""The version of jupyter-flow, in one place every module may import."""

__version__ = "0.1.0"
