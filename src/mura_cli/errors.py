"""The project's one error type and its exit codes.

Library code raises :class:`MuraError` (or a subclass) with a message that names the file and says what to
do next; ``mura_cli.cli.main`` turns it into a red one-line message and the exit code below. Any other
exception is a bug and keeps its traceback.

Exit codes: 0 success, 1 other error, 2 usage, 3 data, 4 model, 5 network (the Hub, a PACS), 6 finished but
some inputs failed (:class:`PartialFailure`: the outputs are written for the inputs that worked, the errors CSV
lists the others).
"""

from __future__ import annotations


class MuraError(Exception):
    """An error the user can act on. ``exit_code`` is what the CLI exits with."""

    exit_code: int = 1


class UsageError(MuraError):
    """Bad arguments or option values."""

    exit_code = 2


class DataError(MuraError):
    """An input file or dataset that cannot be read or does not have the expected layout."""

    exit_code = 3


class ModelError(MuraError):
    """An unknown architecture, a bad checkpoint or weights that do not fit."""

    exit_code = 4


class HubError(MuraError):
    """The Hugging Face Hub could not be reached or does not have what was asked for."""

    exit_code = 5


class PacsError(MuraError):
    """A DICOMweb server (a PACS) could not be reached or refused the request (the network exit code)."""

    exit_code = 5


class PartialFailure(MuraError):
    """The job finished and wrote its outputs, but some inputs failed (listed in the errors CSV beside them)."""

    exit_code = 6
