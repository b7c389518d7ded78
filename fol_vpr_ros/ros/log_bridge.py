"""Python logging of fol_vpr_ros (and warnings) routed to an rclpy logger, so the core's messages reach /rosout.

rclpy's severities use the numbers of Python's logging levels (DEBUG 10 ... FATAL 50), so the node's
``--log-level`` (``--ros-args --log-level fol_vpr:=debug``) becomes the Python level of our loggers.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

__all__ = ["PACKAGE_LOGGERS", "RosLogHandler", "routed_to_ros"]

PACKAGE_LOGGERS = ("fol_vpr_ros", "py.warnings")
"""Python loggers whose records the node forwards: the package's and the warnings module's."""


class RosLogHandler(logging.Handler):
    """Forwards Python log records to an rclpy ``RcutilsLogger`` at the matching severity."""

    def __init__(self, ros_logger: Any) -> None:
        super().__init__()
        self.ros_logger = ros_logger
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            if record.name == "py.warnings":
                text = " ".join(text.split())  # warnings carry file:line and a source line: one line
            level = record.levelno
            log = self.ros_logger
            if level >= logging.CRITICAL:
                log.fatal(text)
            elif level >= logging.ERROR:
                log.error(text)
            elif level >= logging.WARNING:
                log.warning(text)
            elif level >= logging.INFO:
                log.info(text)
            else:
                log.debug(text)
        except Exception:  # never let logging break the node
            self.handleError(record)


@contextlib.contextmanager
def routed_to_ros(ros_logger: Any) -> Iterator[RosLogHandler]:
    """While active, our Python loggers go only to ``ros_logger``, at its effective severity."""
    handler = RosLogHandler(ros_logger)
    level = int(ros_logger.get_effective_level())
    saved = []
    logging.captureWarnings(True)
    for name in PACKAGE_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level, logger.propagate))
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
    try:
        yield handler
    finally:
        for logger, old_level, old_propagate in saved:
            logger.removeHandler(handler)
            logger.setLevel(old_level)
            logger.propagate = old_propagate
        logging.captureWarnings(False)
