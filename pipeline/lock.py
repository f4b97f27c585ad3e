"""The run lock: one run at a time writes the tables of an output root.

Two runs into one ROOT at once would each rewrite `ROOT/metadata/` and `ROOT/errors/` from what they
saw at their start, and the one that commits last drops the other's rows (while both runs' crops stay).
So a run that writes the tables first creates the lock object `ROOT/_gazecrop.lock` with an exclusive
create, and a second run that finds it there refuses before any work (`LockHeldError`):

| ROOT  | exclusive create                     | released (only if still ours)            |
| ----- | ------------------------------------ | ---------------------------------------- |
| local | `os.open` with `O_CREAT`, `O_EXCL`   | read back, compared, `os.unlink`         |
| gs:// | upload with `if_generation_match=0`  | delete with `if_generation_match=<ours>` |
| s3:// | `put_object(IfNoneMatch="*")`        | `delete_object(IfMatch=<our ETag>)`      |

(google-cloud-storage and boto3 directly: Beam's filesystems offer no preconditions. The GCS client
honours `STORAGE_EMULATOR_HOST` and otherwise uses Application Default Credentials; boto3 its usual
environment and config files, `AWS_ENDPOINT_URL_S3` for an S3-compatible store, not Beam's `--s3_*`
options.) Other schemes (hdfs://, azfs://) get no lock: a warning says so.

The lock object is JSON naming its holder (`Holder`: run id, host, pid, user, start time, boot id,
the gazecrop command line with secret-looking option values replaced by `***`). Its name starts with
`_`, which dataset readers of `ROOT/metadata/` and `gazecrop report` skip.

Every run that writes ROOT's tables takes it: a batch run (with --incremental or not) until it ends, a
streaming run for the job's whole life; on Dataflow or Flink the launching process holds it while it
waits for its job. A job only built (`--dry_run`, `--template_location`) takes none. A run releases the
lock when it ends, also on failure and Ctrl-C (`root_lock` is a context manager).

A holder that died without releasing (SIGKILL, a power cut, a reboot) leaves a **stale** lock: when the
lock names this host and either its boot id differs (rebooted since) or its pid is no longer alive, the
next run takes it over, atomically (a conditional replace: the stale object's generation or ETag, or
locally an `flock` on the stale file so that of several runs taking it over exactly one does). A lock
written on another host is never judged from here: the message names the holder and says how to
remove the lock once the user knows that run is dead.

The lock is read before it is created, so a lock held since before a run started is refused even on a
store that ignores preconditions (the loopback GCS server the tests use is one: see tests/test_lock.py);
the exclusive create is what closes the race between two runs starting at the same instant.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import getpass
import json
import logging
import os
import re
import secrets
import shlex
import socket
import sys
from collections.abc import Iterator, Sequence

_LOGGER = logging.getLogger(__name__)

LOCK_NAME = "_gazecrop.lock"

# Tries to take the lock while other runs create, release or take it over at the same moment.
_ATTEMPTS = 5

# Option names whose values the lock's command line leaves out (Beam's --s3_secret_access_key, tokens).
_SECRET_OPTION = re.compile(r"secret|token|password|passwd|credential|key", re.IGNORECASE)


class LockHeldError(RuntimeError):
    """Another run holds the lock of this output root; this run did nothing."""


@dataclasses.dataclass(frozen=True)
class Holder:
    """Who holds a lock: what the lock object says."""
    run_id: str
    host: str
    pid: int
    user: str
    started: str  # UTC, ISO 8601
    command: str
    boot_id: str = ""  # Linux's /proc/sys/kernel/random/boot_id ("" where unknown)

    def to_bytes(self) -> bytes:
        return (json.dumps(dataclasses.asdict(self), indent=1) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Holder | None:
        """The holder a lock object names, or None where it is not a lock this module wrote (empty: its
        writer was stopped between the create and the write; damaged; another program's)."""
        try:
            fields = json.loads(data.decode())
            return cls(run_id=str(fields["run_id"]), host=str(fields["host"]), pid=int(fields["pid"]),
                       user=str(fields["user"]), started=str(fields["started"]),
                       command=str(fields["command"]), boot_id=str(fields.get("boot_id", "")))
        except (ValueError, TypeError, KeyError, AttributeError):
            return None

    def describe(self) -> str:
        return f"run {self.run_id} on host {self.host} (pid {self.pid}, user {self.user}), started {self.started}"


def boot_id() -> str:
    """This boot's id on Linux (it changes at every reboot), "" elsewhere."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return ""


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (some containers)
        return str(os.getuid())


def redacted(argv: Sequence[str]) -> list[str]:
    """`argv` with the value of every option whose name looks secret (`--s3_secret_access_key=...`,
    `--..._token X`) replaced by `***`: the lock object is readable by whoever can list the root."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next and not arg.startswith("--"):
            out.append("***")
            hide_next = False
            continue
        hide_next = False
        name, eq, _ = arg.partition("=")
        secret = name.startswith("--") and bool(_SECRET_OPTION.search(name))
        if secret and eq:
            out.append(f"{name}=***")
        else:
            out.append(arg)
            hide_next = secret
    return out


def this_run(argv: Sequence[str] | None = None) -> Holder:
    """The holder this process writes into the lock. `argv`: the `gazecrop run` arguments (None: the
    process's own command line)."""
    command = ["gazecrop", "run", *argv] if argv is not None else sys.argv
    now = datetime.datetime.now(datetime.timezone.utc)
    return Holder(run_id=f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}", host=socket.gethostname(),
                  pid=os.getpid(), user=_user(), started=now.isoformat(timespec="seconds"),
                  command=shlex.join(redacted(command)), boot_id=boot_id())


def pid_alive(pid: int) -> bool:
    """Whether a process `pid` exists on this host (one of another user counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(holder: Holder) -> bool:
    """The holder ran on this host and is gone: the host rebooted since, or its pid is not alive. A lock
    of another host is never stale from here (its processes cannot be seen)."""
    if holder.host != socket.gethostname():
        return False
    current_boot = boot_id()
    if holder.boot_id and current_boot and holder.boot_id != current_boot:
        return True
    return not pid_alive(holder.pid)


# ----------------------------------------------------------------------------------------------
# Where the lock lives: one small class per kind of root, each with the same four operations. A token
# tells one version of the lock object from another (local: its bytes; gs://: its generation; s3://:
# its ETag). create/replace return the new token, or None where another run got there first.
# ----------------------------------------------------------------------------------------------

class LocalLock:
    """`ROOT/_gazecrop.lock` on a local (or mounted) filesystem."""

    def __init__(self, root: str):
        self.uri = os.path.join(os.path.abspath(root), LOCK_NAME)
        self.remove_command = f"rm {shlex.quote(self.uri)}"

    def read(self) -> tuple[bytes, bytes] | None:
        try:
            with open(self.uri, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        return data, data

    def create(self, data: bytes) -> bytes | None:
        os.makedirs(os.path.dirname(self.uri), exist_ok=True)
        try:
            fd = os.open(self.uri, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return None
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        return data

    def replace(self, token: bytes, data: bytes) -> bytes | None:
        """Take over the lock file whose contents are `token`. Runs taking it over at the same time each
        open it and try a non-blocking `flock`: the one that gets it checks that the file is still the
        one at the path with those contents, removes it and creates its own, all before letting go."""
        try:
            fd = os.open(self.uri, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return None  # another run is taking it over
            try:
                if os.stat(self.uri).st_ino != os.fstat(fd).st_ino:
                    return None  # already replaced
            except FileNotFoundError:
                return None
            if os.read(fd, len(token) + 1) != token:
                return None
            os.unlink(self.uri)
            return self.create(data)
        finally:
            os.close(fd)

    def delete(self, token: bytes) -> None:
        found = self.read()
        if found is None or found[1] != token:
            raise LockLostError(f"{self.uri} is no longer this run's lock")
        os.unlink(self.uri)


class GcsLock:
    """`gs://BUCKET/PREFIX/_gazecrop.lock`, through google-cloud-storage's generation preconditions."""

    def __init__(self, root: str):
        from google.cloud import storage  # only where a root is on GCS
        bucket, _, prefix = root[len("gs://"):].partition("/")
        name = f"{prefix.strip('/')}/{LOCK_NAME}" if prefix.strip("/") else LOCK_NAME
        self.uri = f"gs://{bucket}/{name}"
        self.remove_command = f"gcloud storage rm {shlex.quote(self.uri)}"
        # project=None: none is needed for objects; the client honours STORAGE_EMULATOR_HOST itself.
        self._blob_of = storage.Client(project=None).bucket(bucket).blob
        self._name = name

    def read(self) -> tuple[bytes, int] | None:
        from google.api_core import exceptions
        blob = self._blob_of(self._name)
        try:
            blob.reload()
            return blob.download_as_bytes(if_generation_match=blob.generation), blob.generation
        except (exceptions.NotFound, exceptions.PreconditionFailed):  # gone, or replaced meanwhile
            return None

    def _upload(self, data: bytes, if_generation_match: int) -> int | None:
        from google.api_core import exceptions
        blob = self._blob_of(self._name)
        try:
            blob.upload_from_string(data, content_type="application/json", if_generation_match=if_generation_match)
        except exceptions.PreconditionFailed:
            return None
        return blob.generation

    def create(self, data: bytes) -> int | None:
        return self._upload(data, 0)

    def replace(self, token: int, data: bytes) -> int | None:
        return self._upload(data, token)

    def delete(self, token: int) -> None:
        from google.api_core import exceptions
        try:
            self._blob_of(self._name).delete(if_generation_match=token)
        except (exceptions.NotFound, exceptions.PreconditionFailed) as exc:
            raise LockLostError(f"{self.uri} is no longer this run's lock ({type(exc).__name__})") from exc


class S3Lock:
    """`s3://BUCKET/PREFIX/_gazecrop.lock`, through boto3's conditional writes (If-None-Match / If-Match).
    Not tested here (no S3 server on these machines)."""

    def __init__(self, root: str):
        import boto3  # only where a root is on S3
        bucket, _, prefix = root[len("s3://"):].partition("/")
        self._bucket = bucket
        self._key = f"{prefix.strip('/')}/{LOCK_NAME}" if prefix.strip("/") else LOCK_NAME
        self.uri = f"s3://{bucket}/{self._key}"
        self.remove_command = f"aws s3 rm {shlex.quote(self.uri)}"
        self._s3 = boto3.client("s3")

    def _refused(self, exc) -> bool:
        return exc.response.get("Error", {}).get("Code") in (
            "PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "404")

    def read(self) -> tuple[bytes, str] | None:
        try:
            found = self._s3.get_object(Bucket=self._bucket, Key=self._key)
        except self._s3.exceptions.NoSuchKey:
            return None
        return found["Body"].read(), found["ETag"]

    def _put(self, data: bytes, **condition) -> str | None:
        from botocore.exceptions import ClientError
        try:
            return self._s3.put_object(Bucket=self._bucket, Key=self._key, Body=data, **condition)["ETag"]
        except ClientError as exc:
            if self._refused(exc):
                return None
            raise

    def create(self, data: bytes) -> str | None:
        return self._put(data, IfNoneMatch="*")

    def replace(self, token: str, data: bytes) -> str | None:
        return self._put(data, IfMatch=token)

    def delete(self, token: str) -> None:
        from botocore.exceptions import ClientError
        try:
            self._s3.delete_object(Bucket=self._bucket, Key=self._key, IfMatch=token)
        except ClientError as exc:
            if self._refused(exc):
                raise LockLostError(f"{self.uri} is no longer this run's lock") from exc
            raise


class LockLostError(RuntimeError):
    """At release, the lock object is no longer the one this run created."""


def lock_store(root: str):
    """The lock of output root `root`, or None for a scheme without one."""
    scheme = root.split("://", 1)[0].lower() if "://" in root else ""
    if scheme in ("", "file"):
        return LocalLock(root[len("file://"):] if scheme else root)
    if scheme == "gs":
        return GcsLock(root)
    if scheme == "s3":
        return S3Lock(root)
    return None


# ----------------------------------------------------------------------------------------------
# Taking and releasing
# ----------------------------------------------------------------------------------------------

def refusal(uri: str, holder: Holder | None, remove_command: str) -> str:
    """The message of a run that found the lock held: the lock, its holder, what to do."""
    if holder:
        who = [f"  holder: run {holder.run_id} on host {holder.host} (pid {holder.pid}, user {holder.user}), "
               f"started {holder.started}",
               f"  its command: {holder.command}"]
    else:
        who = ["  holder: not named (the lock is empty or damaged: another run may be creating it at this "
               "moment, or its writer was stopped while creating it)"]
    return "\n".join([
        "another run is writing this output root, so this run did nothing (two runs writing one root's "
        "tables at once would lose one run's rows)",
        f"  lock:   {uri}", *who,
        "  Wait for that run to end, then run again. If you know that run is no longer running (it died "
        f"on another machine), remove the lock: {remove_command}"])


def acquire(store, me: Holder):
    """Create the lock of `store` for `me`, or take over a stale one; returns its token. Raises
    LockHeldError naming the holder where another run holds it."""
    data = me.to_bytes()
    holder = None
    for _ in range(_ATTEMPTS):
        found = store.read()
        if found is None:
            token = store.create(data)
            if token is not None:
                return token
            continue  # another run created it just now: read who
        text, token = found
        holder = Holder.from_bytes(text)
        if holder is None or not is_stale(holder):
            break
        new = store.replace(token, data)
        if new is not None:
            _LOGGER.warning("took over the stale lock %s of %s (that process is gone)", store.uri, holder.describe())
            return new
    raise LockHeldError(refusal(store.uri, holder, store.remove_command))


def release(store, token) -> None:
    """Remove the lock if it is still ours; a failure is logged, never raised (it must not hide the
    run's own outcome)."""
    try:
        store.delete(token)
    except Exception as exc:  # noqa: BLE001 (storage unreachable, lock replaced: say so, go on)
        _LOGGER.warning("could not release the lock %s: %s; if no run is active, remove it: %s",
                        store.uri, exc, store.remove_command)


@contextlib.contextmanager
def root_lock(root: str, argv: Sequence[str] | None = None) -> Iterator[Holder | None]:
    """Hold the lock of output root `root` for the `with` block (released on any exit: the end, an
    exception, Ctrl-C). Yields this run's Holder, or None where the root's scheme has no lock."""
    store = lock_store(root)
    if store is None:
        _LOGGER.warning("no run lock for %s (locks exist for local paths, gs:// and s3://): make sure no "
                        "other run writes this root at the same time", root)
        yield None
        return
    me = this_run(argv)
    token = acquire(store, me)
    try:
        yield me
    finally:
        release(store, token)
