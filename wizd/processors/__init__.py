"""Built-in processors."""

from wizd.processors.command import CommandFailed, CommandProcessor
from wizd.processors.guard import ProcessGuard

__all__ = ["CommandFailed", "CommandProcessor", "ProcessGuard"]
