"""Built-in processors."""

from wizd.processors.command import CommandFailed, CommandProcessor

__all__ = ["CommandFailed", "CommandProcessor"]
