"""The SQLite database on disk: checked before it is opened, created with its mode, and
opened read-only without leaving anything behind.

SQLite creates a database's -wal and -shm files with the database file's own mode (and,
run as root, its owner), so a database file created 0600 keeps all three private.

A read-only reader of a WAL database must not create -wal and -shm files: SQLite would
leave them behind, owned by the reader, and a daemon running as another user could then
not open its own database. While no connection has the database open, SQLite has
checkpointed the WAL into the file and removed both, and the file alone holds everything
committed: a reader then opens it immutable (no locks, no side files) until a -wal file
shows that some connection has opened it, and reopens normally from then on.
"""

from __future__ import annotations

import os
from urllib.parse import quote

from wizd.errors import StoreError

SQLITE_MAGIC = b"SQLite format 3\x00"
WAL_HEADER_BYTE = 18  # file format version numbers: 2 (both) means WAL


def check_directory(path: str, create: bool) -> None:
    """Refuse a database whose folder is missing, or (unless `create`) a missing database."""
    parent = os.path.dirname(os.path.abspath(os.path.expanduser(path)))
    if not os.path.isdir(parent):
        raise StoreError(f"database directory {parent} does not exist")
    if not create and not os.path.exists(path):
        raise StoreError(f"no database at {path} (a daemon or `wizd create` makes it)")


def create_file(path: str, mode: int) -> bool:
    """Create an empty database file with exactly `mode` (whatever the umask) if there is
    none; return whether this call created it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    except FileExistsError:
        return False
    except OSError as exc:
        raise StoreError(f"cannot create database {path}: {exc.strerror}") from exc
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    return True


def wal_in_use(path: str) -> bool:
    """Whether a -wal file exists: some connection has the database open (or had, and
    could not remove it)."""
    return os.path.exists(path + "-wal")


def is_wal(path: str) -> bool:
    """Whether the file's header says WAL mode (a file too short to tell is not)."""
    try:
        with open(path, "rb") as f:
            header = f.read(WAL_HEADER_BYTE + 2)
    except OSError:
        return False
    return header.startswith(SQLITE_MAGIC) and header[WAL_HEADER_BYTE:] == b"\x02\x02"


Stamp = tuple[int, int, int]  # a file's inode, size and mtime (ns)


def file_stamp(path: str) -> Stamp | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_ino, info.st_size, info.st_mtime_ns)


def read_only_uri(path: str) -> tuple[str, Stamp | None]:
    """A `file:` URI that opens `path` read-only and, if it opens it immutable (a WAL
    database that no connection has open: see the module's docstring), the file's stamp
    as it was before (else None)."""
    absolute = os.path.abspath(os.path.expanduser(path))
    stamp = file_stamp(absolute)
    uri = "file:" + quote(absolute) + "?mode=ro"
    if stamp is not None and is_wal(absolute) and not wal_in_use(absolute):
        return uri + "&immutable=1", stamp
    return uri, None


def immutable_stale(path: str, stamp: Stamp) -> bool:
    """Whether a reader that opened `path` immutable at `stamp` must open it again: some
    connection has opened it since (its commits may sit in the WAL), or has written the
    file itself (a checkpoint, after which cached pages would be stale)."""
    return wal_in_use(path) or file_stamp(path) != stamp


def refuse_missing(path: str) -> None:
    """A read-only open of a database that is not there says so."""
    if not os.path.exists(path):
        raise StoreError(f"no database at {path}")
