# SPDX-License-Identifier: Apache-2.0
# Lets a sample's test read an option on the server's own end of a
# connection: the server is the test's child, so pidfd_getfd may duplicate
# its descriptor into the test (Linux 5.6+).
import ctypes
import os
import socket

SYS_PIDFD_OPEN = 434
SYS_PIDFD_GETFD = 438


def server_socket(pid, server_port, client_port):
    """A duplicate of the server's end of the connection between the two
    ports (a socket object to close after use), or None where the kernel
    does not allow it."""
    inode = None
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == client_port:
                inode = fields[9]
    if inode is None:
        return None
    fd = None
    for name in os.listdir("/proc/%d/fd" % pid):
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, name)) == "socket:[%s]" % inode:
                fd = int(name)
        except OSError:
            pass
    if fd is None:
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = libc.syscall(SYS_PIDFD_OPEN, pid, 0)
    if pidfd < 0:
        return None
    mine = libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
    os.close(pidfd)
    return socket.socket(fileno=mine) if mine >= 0 else None


def server_no_delay(pid, server_port, client_sock):
    """Whether the server's end of `client_sock` has TCP_NODELAY set; None if it cannot be read here."""
    dup = server_socket(pid, server_port, client_sock.getsockname()[1])
    if dup is None:
        return None
    try:
        return dup.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        dup.close()  # our duplicate only: the server's descriptor stays open
