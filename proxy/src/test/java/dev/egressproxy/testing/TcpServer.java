package dev.egressproxy.testing;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Raw TCP servers on loopback for tunnel tests, built on plain blocking sockets so that they behave
 * like any other peer: an echo server that shuts down its output only after echoing everything it
 * read (the half-close case), a source that streams a number of bytes as fast as the socket takes
 * them, and a black hole whose accept queue is full so that connection attempts hang, as they do
 * behind a firewall that drops packets. Failures inside the server are recorded for the test to
 * check.
 */
public final class TcpServer implements AutoCloseable {

    /** What to do with an accepted connection. */
    public interface Behaviour {
        void serve(Socket s, TcpServer server) throws IOException;
    }

    private final ServerSocket socket;
    private final ExecutorService executor = Executors.newCachedThreadPool();
    private final List<Socket> accepted = new CopyOnWriteArrayList<>();
    private final List<Socket> fillers = new CopyOnWriteArrayList<>();
    public final List<Throwable> errors = new CopyOnWriteArrayList<>();
    public final AtomicInteger connections = new AtomicInteger();
    public final AtomicLong bytesWritten = new AtomicLong();

    private TcpServer(int backlog, Behaviour behaviour) throws IOException {
        this(InetAddress.getLoopbackAddress(), 0, backlog, behaviour);
    }

    private TcpServer(InetAddress address, int port, int backlog, Behaviour behaviour) throws IOException {
        socket = new ServerSocket(port, backlog, address);
        if (behaviour != null) {
            executor.execute(() -> acceptLoop(behaviour));
        }
    }

    /** A server whose connections are served by {@code behaviour}. */
    public static TcpServer of(Behaviour behaviour) throws IOException {
        return new TcpServer(64, behaviour);
    }

    /** Echoes every byte; after the client's FIN, finishes writing and sends its own FIN. */
    public static TcpServer echo() throws IOException {
        return echo(InetAddress.getLoopbackAddress());
    }

    /** An {@link #echo()} server on {@code address} (such as {@code ::1}), on a port the kernel picks. */
    public static TcpServer echo(InetAddress address) throws IOException {
        return echo(address, 0);
    }

    /** An {@link #echo()} server on {@code address} and {@code port} (0: a port the kernel picks). */
    public static TcpServer echo(InetAddress address, int port) throws IOException {
        return new TcpServer(address, port, 64, (s, server) -> {
            InputStream in = s.getInputStream();
            OutputStream out = s.getOutputStream();
            byte[] buf = new byte[16384];
            int n;
            while ((n = in.read(buf)) >= 0) {
                out.write(buf, 0, n);
                server.bytesWritten.addAndGet(n);
            }
            out.flush();
            s.shutdownOutput();
        });
    }

    /** Writes {@code total} bytes of a known pattern ({@link #patternByte}), then closes. */
    public static TcpServer source(long total) throws IOException {
        return new TcpServer(64, (s, server) -> writePattern(s, server, total));
    }

    /**
     * Reads the request until the client's FIN, then answers with {@code total} bytes of the
     * pattern and closes: a client that half-closes before its download starts.
     */
    public static TcpServer sourceAfterEndOfRequest(long total) throws IOException {
        return new TcpServer(64, (s, server) -> {
            s.getInputStream().readAllBytes();
            writePattern(s, server, total);
        });
    }

    /**
     * Waits for the client's first byte, then writes {@code total} bytes of the pattern and keeps
     * the connection open until the client closes it: a download that starts when its client asks,
     * from an origin that does not end the stream (no FIN) while the client may still read.
     */
    public static TcpServer sourceOnRequest(long total) throws IOException {
        return new TcpServer(64, (s, server) -> {
            InputStream in = s.getInputStream();
            if (in.read() < 0) {
                return;
            }
            sendPattern(s, server, total);
            in.readAllBytes();
            s.close();
        });
    }

    private static void writePattern(Socket s, TcpServer server, long total) throws IOException {
        sendPattern(s, server, total);
        s.close();
    }

    /** Writes {@code total} bytes of the pattern to {@code s} (counted in {@code server}'s bytesWritten unless null). */
    public static void sendPattern(Socket s, TcpServer server, long total) throws IOException {
        OutputStream out = s.getOutputStream();
        byte[] buf = new byte[65536];
        long sent = 0;
        while (sent < total) {
            int n = (int) Math.min(buf.length, total - sent);
            for (int i = 0; i < n; i++) {
                buf[i] = patternByte(sent + i);
            }
            out.write(buf, 0, n);
            sent += n;
            if (server != null) {
                server.bytesWritten.addAndGet(n);
            }
        }
        out.flush();
    }

    /**
     * A listener that never accepts and whose backlog of one is filled by two parked connections:
     * the kernel then drops further SYNs, so a connect attempt hangs until the client gives up.
     */
    public static TcpServer blackhole() throws IOException {
        return blackhole(InetAddress.getLoopbackAddress(), 0);
    }

    /** The same on a given loopback address and port (0: any free port), e.g. 127.0.0.2. */
    public static TcpServer blackhole(InetAddress address, int port) throws IOException {
        TcpServer server = new TcpServer(address, port, 1, null);
        for (int i = 0; i < 2; i++) {
            Socket filler = new Socket();
            filler.connect(server.socket.getLocalSocketAddress(), 2000);
            server.fillers.add(filler);
        }
        return server;
    }

    public static byte patternByte(long offset) {
        return (byte) (offset * 31 + (offset >>> 8));
    }

    private void acceptLoop(Behaviour behaviour) {
        while (!socket.isClosed()) {
            Socket s;
            try {
                s = socket.accept();
            } catch (IOException e) {
                return;
            }
            connections.incrementAndGet();
            accepted.add(s);
            executor.execute(() -> {
                try (s) {
                    behaviour.serve(s, this);
                } catch (IOException e) {
                    if (!socket.isClosed()) {
                        errors.add(e);
                    }
                }
            });
        }
    }

    public int port() {
        return socket.getLocalPort();
    }

    /** Whether a connection from local port {@code clientPort} has been accepted. */
    public boolean hasAcceptedFrom(int clientPort) {
        return accepted.stream().anyMatch(s -> s.getPort() == clientPort);
    }

    @Override
    public void close() throws IOException {
        socket.close();
        for (Socket s : accepted) {
            s.close();
        }
        for (Socket s : fillers) {
            s.close();
        }
        executor.shutdownNow();
    }
}
