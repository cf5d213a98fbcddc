"""packager: one trained model in, every deployable bundle out, each checked against the source."""

__version__ = "0.1.0"
