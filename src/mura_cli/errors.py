"""The project's one error type and its exit codes.

Library code raises :class:`MuraError` (or a subclass) with a message that names the file and says what to
do next; ``mura_cli.cli.main`` turns it into a red one-line message and the exit code below. Any other
exception is a bug: the CLI prints it as one ``internal error`` line (exit :data:`INTERNAL_ERROR`) and shows
its traceback only with ``MURA_DEBUG=1`` or ``mura --debug``; :func:`diagnose` first recognises the known
broken installs (torch and torchvision that do not match) and names the fix.

Exit codes: 0 success, 1 other error, 2 usage, 3 data, 4 model, 5 network (the Hub, a PACS), 6 finished but
some inputs failed (:class:`PartialFailure`: the outputs are written for the inputs that worked, the errors CSV
lists the others), 7 broken install (:class:`InstallError`), 70 internal error (a bug: please report it), 130
interrupted (Ctrl-C).
"""

from __future__ import annotations

INTERNAL_ERROR = 70
"""Exit code of an exception that is not a :class:`MuraError` (a bug; BSD sysexits' ``EX_SOFTWARE``)."""

INSTALL_HINT = "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu"
"""The README's install line for a matching CPU torch/torchvision pair."""


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


class InstallError(MuraError):
    """A dependency is installed but broken (torch and torchvision that do not match)."""

    exit_code = 7


class Interrupted(MuraError):
    """Ctrl-C: the job stopped; the message says what was kept and how to go on."""

    exit_code = 130


def diagnose(err: BaseException) -> InstallError | None:
    """An :class:`InstallError` naming the fix when ``err`` (or its cause) is a known broken install, else None.

    Recognised: torchvision built for another torch (``operator torchvision::nms does not exist``, or
    torchvision's own "PyTorch and torchvision versions are incompatible").
    """
    seen: BaseException | None = err
    visited: set[int] = set()
    while seen is not None and id(seen) not in visited:
        visited.add(id(seen))
        text = str(seen)
        if ("torchvision::" in text and "does not exist" in text) or "torchvision versions are incompatible" in text:
            return InstallError(
                f"torch {_version('torch')} and torchvision {_version('torchvision')} do not match ({text.strip()}); "
                f"install a matching pair, e.g. `{INSTALL_HINT}` (a CPU-only machine; see the README's Set-up)"
            )
        seen = seen.__cause__ or seen.__context__
    return None


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "(not installed)"
