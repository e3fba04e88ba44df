"""The worker's metrics_file (SPEC 6.4): Prometheus text, rewritten whole with the
state file and from the same body, where node_exporter's textfile collector
reads it. A file the worker wrote and the config no longer names is removed:
left there, it would say forever that its processes run."""
import logging

from .. import metrics, safereplace

log = logging.getLogger('dpd')


class MetricsFile:
    def __init__(self):
        self.written = None       # (path, confine) of the file last written
        self.error = None         # the last write's error, said once until it changes

    def write(self, body, path, confine):
        if self.written is not None and self.written[0] != path:
            safereplace.remove(*self.written)
            self.written = None
        if path is None:
            return
        try:
            safereplace.replace(path, metrics.worker_text(body).encode(), confine)
        except OSError as err:
            self._failed('cannot write the metrics file %s: %s' % (path, err.strerror or err))
            return
        if self.error is not None:
            log.info('the metrics file %s is written again', path)
            self.error = None
        self.written = (path, confine)

    def _failed(self, message):
        if message != self.error:
            log.error('%s', message)
            self.error = message
