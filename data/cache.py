"""Where datasets live on disk, and how a folder gets there whole or not at all."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import filelock
import torch

from data.types import DataUnavailable

DEFAULT_DATA_DIR = Path.home() / ".cache" / "mads_datasets"  # mads_datasets' own default
REACH_TIMEOUT_S = 3.0
LOCK_TIMEOUT_S = 600.0  # a download by another process; far longer means it hangs


def resolve_data_dir(data_dir: Path | None) -> Path:
    if data_dir is not None:
        return Path(data_dir)
    env = os.environ.get("SWEEPMAP_DATA_DIR")
    return Path(env) if env else DEFAULT_DATA_DIR


def md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def reachable(url: str, timeout: float = REACH_TIMEOUT_S) -> bool:
    """Can we open a TCP connection to the URL's host within `timeout` seconds?

    mads_datasets calls requests.get without a timeout, so offline it may hang or fail only
    after a long DNS wait. The connect runs in a daemon thread because getaddrinfo ignores
    socket timeouts; an unanswered thread is left to die on its own.
    """
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    ok: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection((parts.hostname or "", port), timeout=timeout).close()
            ok.append(True)
        except OSError:
            pass

    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(timeout)
    return bool(ok)


@contextlib.contextmanager
def locked(data_dir: Path, name: str, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the cross-process lock for building `data_dir/name`; it lives beside, never inside.

    Several sweep agents start at once on one machine: one builds, the others wait and reuse.
    """
    path = data_dir / f".{name}.lock"
    for attempt in range(3):
        made = not data_dir.exists()
        data_dir.mkdir(parents=True, exist_ok=True)
        guard = filelock.FileLock(str(path))
        try:
            guard.acquire(timeout=timeout)
            break
        except filelock.Timeout as exc:
            raise DataUnavailable(
                f"{name}: waited {timeout:.0f} s for another process holding {guard.lock_file}"
            ) from exc
        except FileNotFoundError:
            # The folder went between our mkdir and the lock's open: another process made it,
            # failed and removed it (below). Make it again and take the lock afresh.
            if attempt == 2:
                raise
    try:
        yield
    finally:
        # Unlinked while still held, so that a failed attempt leaves no empty lock file: a
        # process waiting on the old file sees it unlinked when it gets it, and starts over
        # (filelock 4 checks st_nlink after every acquire).
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        guard.release()
        if made:
            with contextlib.suppress(OSError):  # only if nothing else was put there
                data_dir.rmdir()


@contextlib.contextmanager
def staging(data_dir: Path, name: str) -> Iterator[Path]:
    """A scratch folder on the same filesystem as `data_dir`, removed whatever happens.

    Call with the lock held: it also sweeps up the scratch folders of killed processes.
    """
    for stale in data_dir.glob(f".{name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=data_dir))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def install(built: Path, target: Path) -> None:
    """Put the finished folder `built` at `target` with renames, so no reader sees half of it.

    A broken folder already at `target` (mads_datasets leaves an empty one after a failed
    download) is renamed aside first, then deleted. Call with the lock held.
    """
    if target.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        os.replace(target, trash / target.name)
        os.replace(built, target)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(built, target)


def save_atomic(obj: object, path: Path) -> None:
    """torch.save through a temp file and os.replace: readers see the old file or the new one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide a shared cache from other users
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def first_line(exc: BaseException) -> str:
    """An exception as one short line, for messages a sweep agent prints."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
