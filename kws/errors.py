"""Errors that the CLI reports as one line, without a traceback."""


class KwsError(Exception):
    """Base class: a problem the user can fix (bad file, bad option, bad model)."""


class AudioError(KwsError):
    """An audio file that cannot be read: missing, empty, truncated, not audio."""


class DataError(KwsError):
    """A data set folder that does not have a layout kws can read."""


class DownloadError(KwsError):
    """A download that failed, did not match its checksum, or held an unsafe archive."""
