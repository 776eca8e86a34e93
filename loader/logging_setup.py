"""Session logging, as the training notebooks describe it.

* ``<logs>/ipython_logger.log``: every logger report, full detail, rotating at
  about 1 MB with 9 numbered files kept (one file may span several sessions, so
  each line carries the process id).
* the console gets the terse form (``I Wed-00:14:03 - message``).
* in the IPython shell, ``<logs>/ipython_console.log`` records the commands and
  their results (IPython's own ``%logstart`` in rotate mode).
"""
from __future__ import annotations

import logging
import logging.handlers
import os
from pathlib import Path

FILE_NAME = "ipython_logger.log"
CONSOLE_LOG_NAME = "ipython_console.log"
MAX_BYTES = 1_000_000
BACKUP_COUNT = 9
FILE_FORMAT = ("|%(asctime)s.%(msecs)03d|%(levelname)s|%(process)d|%(name)s|%(module)s"
               "|%(lineno)d|%(threadName)s| - %(message)s")
FILE_DATEFMT = "%Y-%m-%d %H:%M:%S"
CONSOLE_FORMAT = "%(levelname).1s %(asctime)s - %(message)s"
CONSOLE_DATEFMT = "%a-%H:%M:%S"
# the loggers a session reports through; library chatter stays out of the console
SESSION_LOGGERS = ("loader", "plans", "iocs", "bluesky-session")
# also worth keeping in the file at INFO (e.g. "wrote scan 12 to SPEC file ...")
FILE_LOGGERS = SESSION_LOGGERS + ("apstools",)

_MARK = "_beamline_session_handler"


def _replace_handler(logger: logging.Logger, handler: logging.Handler, kind: str) -> None:
    """Install ``handler`` once per kind, so loading a session twice does not double lines."""
    for old in list(logger.handlers):
        if getattr(old, _MARK, None) == kind:
            logger.removeHandler(old)
            old.close()
    setattr(handler, _MARK, kind)
    logger.addHandler(handler)


class _SessionOrWarning(logging.Filter):
    """Pass the session's own records at any level, other libraries' from WARNING."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        return record.name.split(".")[0] in FILE_LOGGERS


def setup_logging(log_dir: str | os.PathLike = ".logs", level: int | str = logging.INFO,
                  console_level: int | str | None = logging.INFO,
                  max_bytes: int = MAX_BYTES, backup_count: int = BACKUP_COUNT) -> Path:
    """Log the session's loggers to a rotating file in ``log_dir`` (and the console
    unless ``console_level`` is ``None``).  Returns the log file's path."""
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / FILE_NAME
    lvl = logging.getLevelName(level) if isinstance(level, str) else level
    # one file handler, on the root logger: session loggers at ``level``,
    # everything else (ophyd, bluesky, caproto) only from WARNING up
    file_handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8")
    file_handler.setFormatter(logging.Formatter(FILE_FORMAT, FILE_DATEFMT))
    file_handler.setLevel(lvl)
    file_handler.addFilter(_SessionOrWarning())
    _replace_handler(logging.getLogger(), file_handler, "file")
    console = None
    if console_level is not None:
        console = logging.StreamHandler()
        console.setFormatter(logging.Formatter(CONSOLE_FORMAT, CONSOLE_DATEFMT))
        console.setLevel(console_level)
    for name in FILE_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET or logger.level > lvl:
            logger.setLevel(lvl)
        if console is not None and name in SESSION_LOGGERS:
            _replace_handler(logger, console, "console")
    return path


def start_console_log(shell, log_dir: str | os.PathLike = ".logs") -> Path:
    """Start IPython's own session log (commands and results, timestamped, rotated)."""
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / CONSOLE_LOG_NAME
    if shell.logger.log_active:
        shell.run_line_magic("logstop", "")
    shell.run_line_magic("logstart", f"-o -t -q {path} rotate")
    return path
