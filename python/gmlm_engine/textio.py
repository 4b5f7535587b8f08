"""Text in and out, one rule for the CLI, Ray and files: lines of a binary stream (`read_text_lines`) and
translations written whole or not at all (`AtomicOutput`)."""
from __future__ import annotations

import os
from typing import Iterator


def read_text_lines(f, name: str) -> Iterator[str]:
    """The lines of a binary stream, one rule for files and stdin: lines end at "\n" (a "\r\n" ending
    counts as "\n"); a bare "\r" or any other Unicode line separator inside a line stays part of
    it. Invalid UTF-8 raises ValueError naming the line."""
    for n, raw in enumerate(f, 1):
        if raw.endswith(b"\n"):
            raw = raw[:-1]
            if raw.endswith(b"\r"):
                raw = raw[:-1]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{name}: line {n} is not valid UTF-8 ({e.reason} at byte {e.start})") from None


class AtomicOutput:
    """Where translations are written, checked before any work is done (in the constructor):

    - a regular file (or a new one) is written as a private temporary file next to it and renamed
      over it only on success: a failure leaves the previous file untouched, and two runs on the same
      path never share a temporary file (the last to finish wins, whole); the file keeps its mode;
    - a symbolic link: the file it points to is replaced, the link stays;
    - a device, FIFO or socket (/dev/null, /dev/stdout, a pipe) is written through, as a shell's
      `>` would, never replaced;
    - a directory, a read-only file, or the input file itself (however the path is spelled; `source`
      is its path or an open file) is refused: IsADirectoryError, PermissionError, ValueError.
    """

    def __init__(self, path: str | os.PathLike, source=None):
        import stat

        self.path = os.fspath(path)
        try:
            st = os.stat(self.path)           # follows links: what a write would reach
        except FileNotFoundError:
            st = None
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(f"output {self.path} is a directory; give a file path")
        if st is not None and source is not None:
            try:
                src = os.fstat(source.fileno()) if hasattr(source, "fileno") else os.stat(source)
            except (OSError, ValueError):
                src = None
            if src is not None and (src.st_dev, src.st_ino) == (st.st_dev, st.st_ino):
                raise ValueError(f"output {self.path} is the input file; write the translations to another file")
        self.direct = st is not None and not stat.S_ISREG(st.st_mode)
        if st is not None and not self.direct and (not st.st_mode & 0o222 or not os.access(self.path, os.W_OK)):
            raise PermissionError(f"output {self.path} is read-only")
        self.mode = None if st is None else stat.S_IMODE(st.st_mode)
        self.target = os.path.realpath(self.path)
        if not self.direct and not os.path.isdir(os.path.dirname(self.target) or "."):
            raise FileNotFoundError(f"output {self.path}: the folder {os.path.dirname(self.target)} does not exist")

    def __enter__(self):
        if self.direct:
            self.tmp = None
            self.f = open(self.path, "w", encoding="utf-8")
            return self.f
        import secrets

        folder, name = os.path.split(self.target)
        for _ in range(100):
            self.tmp = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.partial")
            try:   # O_EXCL: this run's own file; 0o666 & ~umask like any new file
                fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                break
            except FileExistsError:
                continue
        else:  # pragma: no cover
            raise FileExistsError(f"output {self.path}: cannot create a temporary file next to it")
        self.f = os.fdopen(fd, "w", encoding="utf-8")
        return self.f

    def __exit__(self, exc_type, exc, tb):
        try:
            self.f.close()
        finally:
            if self.tmp is not None:
                if exc_type is None:
                    if self.mode is not None:
                        os.chmod(self.tmp, self.mode)
                    os.replace(self.tmp, self.target)
                else:
                    try:
                        os.remove(self.tmp)
                    except OSError:
                        pass
        return False
