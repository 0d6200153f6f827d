"""Hand a few bytes from rank 0 to every other rank over TCP, before NCCL can talk (its unique id):
rank 0 listens on MASTER_PORT, the others connect to MASTER_ADDR, retrying until it listens."""
import socket
import struct
import time


def share(payload, addr, port, rank, world_size, timeout):
    """Rank 0's `payload` (bytes; ignored elsewhere), returned on every rank."""
    if rank == 0:
        with socket.create_server(("", port)) as server:
            server.settimeout(timeout)
            for _ in range(world_size - 1):
                try:
                    conn, _ = server.accept()
                except TimeoutError:
                    raise TimeoutError(f"rank 0 heard from fewer than {world_size - 1} ranks on port {port} in "
                                       f"{timeout:.0f} s") from None
                with conn:
                    conn.sendall(struct.pack("!I", len(payload)) + payload)
        return payload
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((addr, port), timeout=timeout) as conn:
                size = struct.unpack("!I", _receive(conn, 4))[0]
                return _receive(conn, size)
        except (ConnectionRefusedError, ConnectionResetError, socket.gaierror):
            if time.monotonic() > deadline:
                raise TimeoutError(f"rank {rank} found no rank 0 at {addr}:{port} in {timeout:.0f} s") from None
            time.sleep(0.1)


def _receive(conn, size):
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionResetError("rank 0 closed the connection early")
        data += chunk
    return data
