"""The one error hierarchy. Each class carries an exit code and a default hint.

Only the CLI entry turns these into exit codes; library code raises them with a message that
says what failed and why, and a hint that says what to do.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class PackagerError(Exception):
    """Base of every error a user can act on."""

    exit_code = 1
    hint = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint

    def one_line(self) -> str:
        """The message and its hint on one line, as the CLI prints it."""
        text = " ".join(self.message.split())
        if self.hint:
            text += f" (hint: {' '.join(self.hint.split())})"
        return text


class UsageError(PackagerError):
    exit_code = 2


class ConfigError(PackagerError):
    exit_code = 2
    hint = "run `packager config` for every key, its default and what it means"


class UnknownTargetError(UsageError):
    hint = "run `packager targets` to list the installed targets"


class ModelInputError(PackagerError):
    """The model file cannot be read or is not what its name says."""

    exit_code = 3


class SamplesError(PackagerError):
    exit_code = 3


class UnsupportedOpError(PackagerError):
    exit_code = 4


class OutputError(PackagerError):
    exit_code = 5
    hint = "pass --out to a folder you can write to"


class MissingDependencyError(PackagerError):
    exit_code = 6


class ConversionError(PackagerError):
    exit_code = 7


class FidelityError(PackagerError):
    """A variant that must match the source does not."""

    exit_code = 8


class PartialBuildError(PackagerError):
    """Some targets of a build failed; the others were built and are in place."""

    exit_code = 15
    hint = "build.json lists each failed target under 'failed', with its step and log; --strict stops at the first"


class VerifyError(PackagerError):
    exit_code = 9


class BudgetError(PackagerError):
    """A bundle is over a size limit of where it deploys (checked at build time)."""

    exit_code = 10


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The closest valid spelling of ``word``, or None when nothing is near."""
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` or an empty string."""
    best = closest(word, choices)
    return f"; did you mean '{best}'?" if best else ""


def require(module: str, extra: str) -> None:
    """Raise a MissingDependencyError naming the extra that installs ``module``."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingDependencyError(
            f"this step needs the Python package '{module}', which is not installed",
            hint=f'pip install -c constraints.txt "packager[{extra}]"',
        )


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's text, for one-line messages."""
    import re

    text = str(exc).strip()
    # onnxruntime puts the whole model path first; the reason after it is what a reader needs.
    text = re.sub(r"Load model from \S+ failed:\s*", "", text)
    return text.splitlines()[0][:limit] if text else type(exc).__name__


class RegistryError(PackagerError):
    """The registry store cannot be read or written, or holds something unexpected."""

    exit_code = 11
    hint = "check --registry (a folder, or s3://bucket/prefix with AWS credentials)"


class PublishError(RegistryError):
    """A build cannot be published as it is."""

    hint = "rebuild it with `packager build`, or check it with `packager verify DIST`"


class ConflictError(RegistryError):
    """A write lost a race, or would change something immutable."""

    exit_code = 12
    hint = "another publish or rollout changed the registry at the same time; run the command again"


class SigningError(RegistryError):
    """Signing keys are missing or do not match, or signed metadata does not verify."""

    exit_code = 13
    hint = "create keys with `packager keys init --keys DIR --registry R`, then pass --keys DIR"


class InvalidNameError(UsageError):
    """A model, channel or version name that is not allowed in registry paths."""

    hint = "use letters, digits, '.', '_' and '-' only, starting with a letter or digit"


class ProfileError(UsageError):
    """A device profile that is not valid JSON of the DeviceProfile shape."""

    hint = "see DeviceProfile in the registry docs: platform, arch, runtimes, memory_mb, ..."


class ServiceError(PackagerError):
    """An HTTP error of the manifest server: ``status``, a stable ``code`` and a message.

    The server answers it as ``{"error": {"code", "message"}}`` (powertools' ServiceError shape).
    One that reaches the command line is the registry's error (exit 11).
    """

    exit_code = 11

    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.headers = headers or {}


class ClientError(PackagerError):
    """The device client could not resolve, download, verify or load a model."""

    exit_code = 14
    hint = "check --server and that the model is published (`curl SERVER/v1/models/MODEL/manifest`)"


class OfflineError(ClientError):
    """The manifest server cannot be reached and nothing was installed before."""

    hint = "connect once so the client can install a variant; later starts use it when offline"


class DownloadError(ClientError):
    """An artifact download failed or was cut off (what arrived is kept and resumed next time)."""

    hint = "check the network and run it again: the download resumes where it stopped"


class IntegrityError(ClientError):
    """Downloaded bytes whose sha256 or length is not the one the registry promised."""

    hint = "the bytes were corrupted or tampered with on the way or in the store; they were deleted"


class LoadError(ClientError):
    """A variant installed but its runtime could not load or run it."""

    hint = "install the runtime the variant needs, or pass a profile without it so another variant is chosen"


class NoVariantError(ClientError):
    """No variant of the resolution, and no cloud endpoint, could be used."""

    hint = "see the reasons listed; publish a variant this device can run, or configure a cloud endpoint"


class CloudError(ClientError):
    """The cloud inference endpoint (Open Inference Protocol v2) failed or refused a request."""

    hint = "check the endpoint's URL in the published version (publish --cloud-url) and that it is up"
