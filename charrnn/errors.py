"""The library's error types.

The library never prints and never exits: it raises these, with messages that name the problem,
and the CLI turns every one of them into a one-line message and a non-zero exit status.
"""


class CharrnnError(Exception):
    """Base class of every error charrnn raises on purpose."""


class VocabularyError(CharrnnError, ValueError):
    """Text has characters the vocabulary does not know, or a vocabulary is malformed."""


class ConfigError(CharrnnError, ValueError):
    """A configuration value is out of range or inconsistent."""


class CorpusError(CharrnnError):
    """A corpus cannot be read or is unusable (missing, empty, undecodable, too short)."""


class CheckpointError(CharrnnError):
    """A checkpoint is missing, unreadable, corrupt, unsafe or does not match its configuration."""


class TrainingDiverged(CharrnnError):
    """The loss became NaN or infinite."""
