# SPDX-License-Identifier: Apache-2.0
# What the kvstore test scripts share: the check tally, a free loopback
# port, RESP encoding, and a server started and stopped without sleeping.
import os
import resource
import signal
import socket
import subprocess
import threading

failures = []


def check(name, ok, detail=""):
    print(("ok:   " if ok else "FAIL: ") + name + (("  -- " + str(detail)) if detail and not ok else ""))
    if not ok:
        failures.append(name)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def resp(*args):
    """A RESP array of bulk strings (str or bytes arguments)."""
    args = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


class Server:
    """Starts `binary` on `data` (None: its default) and waits for its "listening" line, or for its exit.

    port: the port (default: a free one); nofile: an open files limit for the
    server; cpus: the CPUs it may run on, as `taskset -c` sets them (default:
    ours); expect_fail: an exit before listening is no error (see `started`);
    env: the server's environment (default: ours).
    """

    def __init__(self, binary, data, *extra, port=None, nofile=None, cpus=None, expect_fail=False, env=None):
        self.port = port if port is not None else free_port()

        def limit():
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
            if cpus is not None:
                os.sched_setaffinity(0, cpus)

        data_args = [] if data is None else ["--data", data]  # None: the server's default
        self.proc = subprocess.Popen([binary, "--port", str(self.port), *data_args, *extra],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     preexec_fn=limit if nofile is not None or cpus is not None else None,
                                     env=env)
        self.lines = []
        self.started = False
        self.reader = None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            if "listening on" in line:
                self.started = True
                break
        if not self.started:
            self.proc.wait(timeout=20)
            if not expect_fail:
                raise RuntimeError("kvstore exited before listening:\n" + self.output())
            return
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()

    def _drain(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    def output(self):
        return "".join(self.lines)

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        """SIGTERM, then the exit code; a server that has not stopped in 30 s is killed and that is an error."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError("kvstore did not stop within 30 s of SIGTERM:\n" + self.output()[-2000:])
        self._join()
        return rc

    def kill(self):
        self.proc.kill()
        self.proc.wait(timeout=30)
        self._join()

    def _join(self):
        if self.reader is not None:
            self.reader.join(timeout=5)
