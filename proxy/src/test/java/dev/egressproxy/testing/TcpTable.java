package dev.egressproxy.testing;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** What the kernel's TCP tables ({@code /proc/net/tcp} and {@code tcp6}) say about a loopback socket. */
public final class TcpTable {

    private TcpTable() {
    }

    /**
     * The send queue (bytes in flight and not yet sent: {@code tx_queue}) of the TCP socket from
     * {@code localPort} to {@code remotePort} on loopback; a socket its program has closed is
     * listed until the kernel has sent what it holds.
     */
    public static long sendQueue(int localPort, int remotePort) throws IOException {
        long queue = sendQueueIfListed(localPort, remotePort);
        if (queue < 0) {
            throw new AssertionError("no socket from port " + localPort + " to " + remotePort + " in /proc/net/tcp{,6}");
        }
        return queue;
    }

    /** As {@link #sendQueue}, or -1 when no such socket is listed (it has closed for good). */
    public static long sendQueueIfListed(int localPort, int remotePort) throws IOException {
        String local = String.format(":%04X ", localPort);
        String remote = String.format(":%04X ", remotePort);
        // Netty's native sockets are IPv6 ones that also speak IPv4 (tcp6, ::ffff:127.0.0.1).
        for (String table : new String[] {"/proc/net/tcp", "/proc/net/tcp6"}) {
            for (String line : Files.readAllLines(Path.of(table))) {
                String[] f = line.trim().split("\\s+");
                if (f.length > 4 && (f[1] + " ").endsWith(local) && (f[2] + " ").endsWith(remote)) {
                    return Long.parseLong(f[4].substring(0, f[4].indexOf(':')), 16);
                }
            }
        }
        return -1;
    }
}
