"""pgolf: train, compress and legally evaluate small language models under a hard byte budget."""

__version__ = "0.1.0"
