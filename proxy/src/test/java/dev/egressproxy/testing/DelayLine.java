package dev.egressproxy.testing;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.DelayQueue;
import java.util.concurrent.Delayed;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A TCP relay that holds every byte for a fixed delay before passing it on, in both directions: a
 * long link in user space, for kernels without the {@code netem} qdisc. Each accepted connection is
 * relayed to {@code target}; what one side sends reaches the other {@code delay} later, in order,
 * and its FIN too. At most {@value #IN_FLIGHT} bytes per direction are held (the link's
 * bandwidth-delay product); past that the relay stops reading, so TCP flow control works through
 * it. Failures are recorded for the test to check.
 */
public final class DelayLine implements AutoCloseable {

    private static final int IN_FLIGHT = 8 * 1024 * 1024;

    private final ServerSocket listener;
    private final InetSocketAddress target;
    private final long delayNanos;
    private final ExecutorService threads = Executors.newCachedThreadPool(r -> {
        Thread t = new Thread(r, "delay-line");
        t.setDaemon(true);
        return t;
    });
    private final List<Socket> sockets = new CopyOnWriteArrayList<>();
    private final AtomicLong sequence = new AtomicLong();
    public final List<Throwable> errors = new CopyOnWriteArrayList<>();

    /** Listens on {@code address} (port picked by the kernel) and relays to {@code target}. */
    public DelayLine(InetAddress address, InetSocketAddress target, long delayMillis) throws IOException {
        this.listener = new ServerSocket(0, 64, address);
        this.target = target;
        this.delayNanos = TimeUnit.MILLISECONDS.toNanos(delayMillis);
        threads.execute(this::acceptLoop);
    }

    public int port() {
        return listener.getLocalPort();
    }

    private void acceptLoop() {
        while (!listener.isClosed()) {
            try {
                Socket in = listener.accept();
                Socket out = new Socket();
                sockets.add(in);
                sockets.add(out);
                out.connect(target, 5000);
                threads.execute(() -> direction(in, out));
                threads.execute(() -> direction(out, in));
            } catch (IOException e) {
                if (!listener.isClosed()) {
                    errors.add(e);
                }
                return;
            }
        }
    }

    /** One chunk on its way, due at {@code due}; an empty one stands for the FIN. */
    private record Chunk(long due, long seq, byte[] bytes) implements Delayed {
        @Override
        public long getDelay(TimeUnit unit) {
            return unit.convert(due - System.nanoTime(), TimeUnit.NANOSECONDS);
        }

        @Override
        public int compareTo(Delayed o) {
            Chunk other = (Chunk) o;
            // Equal due times keep their order: a DelayQueue alone is not first in, first out.
            int byDue = Long.compare(due, other.due);
            return byDue != 0 ? byDue : Long.compare(seq, other.seq);
        }
    }

    private void direction(Socket from, Socket to) {
        DelayQueue<Chunk> line = new DelayQueue<>();
        Semaphore room = new Semaphore(IN_FLIGHT);
        threads.execute(() -> deliver(line, room, from, to));
        try {
            InputStream in = from.getInputStream();
            byte[] buf = new byte[65536];
            int n;
            while ((n = in.read(buf)) >= 0) {
                room.acquire(n);
                line.add(new Chunk(System.nanoTime() + delayNanos, sequence.incrementAndGet(), java.util.Arrays.copyOf(buf, n)));
            }
            line.add(new Chunk(System.nanoTime() + delayNanos, sequence.incrementAndGet(), new byte[0]));
        } catch (IOException | InterruptedException e) {
            // The other side or close() ended the connection.
            closeQuietly(from);
            closeQuietly(to);
        }
    }

    private void deliver(DelayQueue<Chunk> line, Semaphore room, Socket from, Socket to) {
        try {
            OutputStream out = to.getOutputStream();
            while (true) {
                Chunk c = line.take();
                if (c.bytes().length == 0) {
                    to.shutdownOutput();
                    if (from.isOutputShutdown() || to.isInputShutdown()) {
                        closeQuietly(from);
                        closeQuietly(to);
                    }
                    return;
                }
                out.write(c.bytes());
                room.release(c.bytes().length);
            }
        } catch (IOException | InterruptedException e) {
            closeQuietly(from);
            closeQuietly(to);
        }
    }

    private static void closeQuietly(Socket s) {
        try {
            s.close();
        } catch (IOException ignored) {
            // Closing on the way out.
        }
    }

    @Override
    public void close() throws IOException {
        listener.close();
        for (Socket s : sockets) {
            closeQuietly(s);
        }
        threads.shutdownNow();
    }
}
