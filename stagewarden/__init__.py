"""Stagewarden command line: policy tools, Docker-less invoke and the local AWS emulator."""

__version__ = "0.1.0"
