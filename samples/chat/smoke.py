# Drives samples/chat with three clients: rooms, messages, and two misbehaving
# clients (a /crash and an over-long line) that take down only themselves.
import os
import socket
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from socket_probe import server_no_delay  # noqa: E402  (samples/socket_probe.py)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Client:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.f = self.s.makefile("r")
        self.expect("welcome")

    def send(self, text):
        self.s.sendall((text + "\n").encode())

    def expect(self, fragment):
        """Reads lines until one contains `fragment` (the server's reply: no sleeping)."""
        while True:
            line = self.f.readline()
            if not line:
                raise AssertionError("connection closed while waiting for %r" % fragment)
            if fragment in line:
                return line.strip()

    def closed(self):
        try:
            while self.f.readline():
                pass
            return True
        except OSError:
            return True


# A port that is no port is refused at once, naming it (it used to listen on a random one).
for bad in ("x", "0", "65536"):
    r = subprocess.run([sys.argv[1], "--port", bad], capture_output=True, text=True, timeout=20)
    assert r.returncode == 2 and ("'%s'" % bad) in r.stderr, (bad, r.returncode, r.stdout, r.stderr)

port = free_port()
server = subprocess.Popen([sys.argv[1], "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
out = server.stdout.readline()
assert "listening" in out, out
ok = True
try:
    a, b, c = Client(port), Client(port), Client(port)
    a.send("/nick ada"); a.expect("you are ada")
    b.send("/nick bob"); b.expect("you are bob")
    a.send("/join lobby"); a.expect("joined lobby")
    b.send("/join lobby"); b.expect("joined lobby")
    a.send("hello bob")
    print(b.expect("[lobby] ada: hello bob"))
    c.send("/crash")  # misbehaving: its own session dies
    assert c.closed()
    d = Client(port)
    d.send("x" * 5000)  # an over-long line
    assert d.closed()
    b.send("still here")
    print(a.expect("[lobby] bob: still here"))
    e = Client(port)
    e.send("/join lobby")
    print(e.expect("ada: hello bob"))  # the room's history
    a.send("/who"); print(a.expect("3 in lobby"))
    # As the kvstore: no Nagle, or a second broadcast in a row waits for
    # the client's delayed ACK of the first.
    no_delay = server_no_delay(server.pid, port, b.s)
    if no_delay is None:
        print("skipped: cannot reach the server's socket here (pidfd_getfd not allowed)")
    else:
        assert no_delay, "a session's socket has no TCP_NODELAY"
    a.send("/quit"); a.expect("bye")
except Exception as ex:  # noqa: BLE001
    print("FAILED:", ex)
    ok = False
server.terminate()
rest = server.communicate(timeout=20)[0]
print(out + rest)
ok = ok and server.returncode == 0 and "crashed on purpose" in rest
print("all checks passed" if ok else "FAILED")
sys.exit(0 if ok else 1)
