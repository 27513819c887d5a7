"""The safety of the files a run writes: exclusive output, reserved space, no stale leftovers.

* :class:`RunLock`: an exclusive ``fcntl.flock`` on a lock file, taken by rank 0 at start-up and
  held for the whole run: ``.OUT.h5.lock`` next to the output and ``DIR/lock`` inside a checkpoint
  directory.  A second run on the same output or checkpoint is refused (InputError, exit 2)
  while the first is alive; the lock dies with its process (``kill -9`` included), so a stale
  lock file never blocks anything.  The file names the holder (pid and host) for the message.
* :func:`new_temp` / :func:`stale_temps`: the result is written under ``.OUT.h5.XXXXXXXX.tmp``
  (``tempfile.mkstemp`` names) in the output's folder; a successful run removes such files left
  by earlier killed runs of the same output (only names of exactly that pattern).
* :func:`reserve`: ``fallocate(2)`` of the whole file before anything is written, so a full
  disk or a quota is found up front, where every rank can still stop cleanly.  File systems
  without fallocate fall back to a free-space check (``statvfs``).
* :func:`link_no_replace`: the final rename never replaces a file that appeared during the run
  (``os.link`` then unlink of the temporary name; ``renameat2(RENAME_NOREPLACE)`` where hard
  links are not supported).
* :func:`io_problem`: a short description of an I/O error ("No space left on device") for the
  one-line messages.

May import: :mod:`mpi_enum.errors` and the standard library; h5py (only to read a partial
result's attributes).
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import re
import socket
import tempfile

from ..errors import InputError, OutputError

TEMP_SUFFIX = ".tmp"
# errnos that mean "this file system cannot take the file" (not a bug): exit 4, one line
IO_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM,
             errno.ENOENT, errno.ESTALE, errno.ENXIO}
_KNOWN = [os.strerror(e) for e in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO,
                                   errno.EACCES, errno.ESTALE)]


def partial_path(out):
    """Where a stopped run writes its partial result (the real output path is never touched)."""
    root, ext = os.path.splitext(out)
    return root + ".partial" + (ext or ".h5")


def lock_path_for_output(out):
    return os.path.join(os.path.dirname(os.path.abspath(out)), "." + os.path.basename(out) + ".lock")


def lock_path_for_checkpoint(ckdir):
    return os.path.join(ckdir, "lock")


# ----------------------------------------------------------------------------- errors

def io_problem(exc) -> str:
    """The problem of an I/O exception in a few words (OSError, or h5py's wrapped MPI-IO errors)."""
    if isinstance(exc, OSError) and exc.errno is not None and exc.strerror:
        return exc.strerror
    text = str(exc)
    for s in _KNOWN:
        if s.lower() in text.lower():
            return s
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first if len(first) <= 160 else first[:157] + "..."


def is_io_error(exc) -> bool:
    """An OSError of a kind a full or failing file system causes (not a bug of this program)."""
    return isinstance(exc, OSError) and exc.errno in IO_ERRNOS


# ----------------------------------------------------------------------------- locks

class RunLock:
    """An exclusive advisory lock held while a run is alive (see the module docstring)."""

    def __init__(self, path=None, fd=None, made_dir=None):
        self.path, self.fd, self.made_dir = path, fd, made_dir

    @classmethod
    def acquire(cls, path, what, hint):
        """Lock ``path`` (created if needed, its folder too) or raise InputError naming ``what``
        and the run holding it (``hint``: what the user can do).  A file system without locks
        gives a lock that guards nothing (never an error)."""
        folder = os.path.dirname(os.path.abspath(path))
        made = None
        if not os.path.isdir(folder):
            try:
                os.makedirs(folder)
                made = folder
            except OSError:
                return cls()  # the run's own checks report an unusable folder
        for _ in range(20):
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError:
                return cls(made_dir=made)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                raise InputError(f"{what}: another mpi-enum run{f' ({holder})' if holder else ''} is using it; "
                                 f"{hint}") from None
            except OSError:  # ENOLCK, EOPNOTSUPP: no locks on this file system
                os.close(fd)
                return cls(made_dir=made)
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except OSError:
                same = False
            if same:  # not a file that its last holder unlinked while we opened it
                try:
                    os.ftruncate(fd, 0)
                    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
                except OSError:
                    pass
                return cls(path, fd, made)
            os.close(fd)
        return cls(made_dir=made)

    def release(self, remove_dir=False):
        """Remove the lock file and unlock (idempotent).  ``remove_dir``: also remove the lock's
        folder when it is then empty (a checkpoint folder that is no longer needed)."""
        if self.fd is not None:
            try:
                os.unlink(self.path)
            except OSError:
                pass
            os.close(self.fd)
            self.fd = None
        folder = os.path.dirname(os.path.abspath(self.path)) if self.path else self.made_dir
        for d in {folder, self.made_dir} if remove_dir else {self.made_dir}:
            if d:
                try:
                    os.rmdir(d)  # only if empty
                except OSError:
                    pass
        self.made_dir = None


def _holder(fd) -> str:
    try:
        return os.pread(fd, 200, 0).decode(errors="replace").strip()
    except OSError:
        return ""


# ----------------------------------------------------------------------------- temporary files

def new_temp(path) -> str:
    """Create ``.BASENAME.XXXXXXXX.tmp`` next to ``path`` (empty, mode 0666 less the umask); returns its path."""
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=TEMP_SUFFIX,
                               dir=os.path.dirname(os.path.abspath(path)))
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())
    return tmp


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


def stale_temps(path) -> list:
    """Temporary files of earlier runs of this output (exactly :func:`new_temp`'s names)."""
    folder = os.path.dirname(os.path.abspath(path))
    pat = re.compile(r"^\." + re.escape(os.path.basename(path)) + r"\.[A-Za-z0-9_]{8}" + re.escape(TEMP_SUFFIX) + "$")
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return sorted(os.path.join(folder, n) for n in names if pat.match(n))


def remove_stale_temps(*paths, keep=()) -> int:
    n = 0
    for p in paths:
        for t in stale_temps(p):
            if t in keep:
                continue
            try:
                os.unlink(t)
                n += 1
            except OSError:
                pass
    return n


def unlink_quietly(path):
    if path:
        try:
            os.unlink(path)
        except OSError:
            pass


# ----------------------------------------------------------------------------- space

_libc = None


_KEEP_SIZE = 1  # FALLOC_FL_KEEP_SIZE


def _fallocate(fd, size):
    """fallocate(2) with FALLOC_FL_KEEP_SIZE: the blocks of the first ``size`` bytes are allocated
    but the file's length stays what its writer makes it.  Raises OSError; returns False where the
    file system lacks it."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    _libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]
    if _libc.fallocate(fd, _KEEP_SIZE, 0, ctypes.c_longlong(size)) == 0:
        return True
    e = ctypes.get_errno()
    if e in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
        return False
    raise OSError(e, os.strerror(e))


def reserve(path, size):
    """Allocate the disk blocks of the first ``size`` bytes of the file ``path`` (its length is
    not changed), or raise OSError (ENOSPC, EDQUOT, EFBIG...) with the file name.  Without
    fallocate: a free-space check.  :func:`trim` gives back what the file did not use."""
    size = int(size)
    if size <= 0:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            if not _fallocate(fd, size):
                st = os.fstatvfs(fd)
                have = st.f_bavail * st.f_frsize + os.fstat(fd).st_blocks * 512
                if have < size:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        finally:
            os.close(fd)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, path) from None


def trim(path):
    """Free blocks reserved beyond the end of the file (a truncate to its own length frees them on
    some file systems but not all; one byte longer and back does on all)."""
    try:
        n = os.path.getsize(path)
        os.truncate(path, n + 1)
        os.truncate(path, n)
    except OSError:
        pass


def fsync_path(path, directory=True):
    """fsync a file and (``directory``) its folder, so that a rename is durable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if directory:
            fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    except OSError:
        pass


# ----------------------------------------------------------------------------- the final name

_RENAME_NOREPLACE = 1
_AT_FDCWD = -100


def _renameat2_noreplace(src, dst):
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    fn = getattr(_libc, "renameat2", None)
    if fn is None:
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
        return True
    e = ctypes.get_errno()
    if e in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(e, os.strerror(e), dst)


def link_no_replace(src, dst):
    """Give the file ``src`` the name ``dst`` unless ``dst`` exists (FileExistsError then; ``src``
    is left in place).  Atomic: a file that appears at ``dst`` meanwhile is never replaced."""
    try:
        os.link(src, dst)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS):
            raise
        if _renameat2_noreplace(src, dst):
            return
        if os.path.lexists(dst):  # neither hard links nor renameat2: the best a check can do
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst) from None
        os.rename(src, dst)
        return
    os.unlink(src)


def install(tmp, path, replace):
    """Move the finished temporary file to ``path``: ``os.replace`` when ``replace``, else without
    ever replacing a file that appeared there (OutputError naming it, and the temporary file is
    kept under a visible name beside it, so that nothing computed is lost)."""
    if replace:
        os.replace(tmp, path)
        return path
    try:
        link_no_replace(tmp, path)
        return path
    except FileExistsError:
        pass
    root, ext = os.path.splitext(path)
    keep = f"{root}.{os.getpid()}{ext or '.h5'}"
    try:
        link_no_replace(tmp, keep)
    except OSError:
        keep = tmp
    raise OutputError(f"{path}: appeared while this run was writing its result (another program?) and was not "
                      f"replaced (no --force); the result is in {keep}")


def install_agreed(comm, tmp, path, replace, note="", trim_first=False):
    """Rank 0 installs the finished temporary file (:func:`install`; ``trim_first``: :func:`trim`
    it before); every rank of ``comm`` (None: alone) learns the verdict and raises the same
    OutputError on a failure (an OSError becomes one naming ``path``, ending in ``note``; the
    temporary file is removed then)."""
    err = None
    if comm is None or comm.rank == 0:
        try:
            if trim_first:
                trim(tmp)
            install(tmp, path, replace)
        except OutputError as exc:
            err = str(exc)
        except OSError as exc:
            err = f"{path}: cannot write the result ({io_problem(exc)}){note}"
            unlink_quietly(tmp)
    if comm is not None and comm.size > 1:
        err = comm.bcast(err, root=0)
    if err is not None:
        raise OutputError(err)


# ----------------------------------------------------------------------------- partial results

def partial_checkpoint(path):
    """The ``checkpoint_dir`` attribute of a partial result file, "" without one, None when the
    file is not a readable result."""
    try:
        import h5py

        with h5py.File(path, "r") as f:
            if f.attrs.get("format") not in ("mpi_enum.regions", b"mpi_enum.regions"):
                return None
            v = f.attrs.get("checkpoint_dir", "")
            return v.decode() if isinstance(v, bytes) else str(v)
    except Exception:
        return None
