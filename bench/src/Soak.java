import java.io.IOException;
import java.io.PrintStream;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Iterator;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.PriorityQueue;
import java.util.Random;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.LongAdder;
import java.util.stream.Stream;

/**
 * The soak of the egress-proxy benchmark ({@code bench/run.sh --soak}; docs/performance.md, "Soak"):
 * an origin, and a load generator that holds thousands of CONNECT tunnels through one proxy for
 * minutes and samples the proxy every 10 s. JDK only; bench/run.sh compiles it with Bench.java and
 * runs the origin and the load generator as two processes (each holds one descriptor per tunnel).
 *
 * <pre>
 * origin PORT
 *     one selector thread; each request head on a connection gets one response:
 *     GET /bytes/N (N bytes), GET /stream (Content-Length 1 TiB: endless), GET /ping (4 bytes)
 * load PROXY ORIGIN TUNNELS MINUTES IDLE:SLOW:BULK PROXY_PID ADMIN_URL|- CSV
 *     hold TUNNELS tunnels through PROXY (HOST:PORT) to ORIGIN (HOST:PORT), split by the weights
 *     IDLE:SLOW:BULK, for MINUTES once they are all up (or 3 minutes after the start if they
 *     never are); a CSV row per 10 s sample, a progress line per sample on stderr
 * </pre>
 *
 * The three kinds of tunnel (the harness's own socket buffers are fixed, see {@link #SMALL_BUFFER}):
 * <ul>
 * <li><b>idle</b>: a 4-byte ping every 60 s (at a random phase), whose answer must arrive within
 *     30 s; the pings keep every proxy's idle timeout (5 min in egress-proxy) from closing it;
 * <li><b>slow</b>: one endless download read at {@value #SLOW_RATE} bytes/s, a slow client on a thin
 *     link: the origin is fast, so every proxy holds a backlog for each such tunnel;
 * <li><b>bulk</b>: downloads of {@value #BULK_BYTES} bytes read as fast as they come, {@value
 *     #BULK_PER_TUNNEL} on a tunnel, then a new tunnel (so tunnels also come and go).
 * </ul>
 *
 * Errors, each counted with a reason: a TCP connect to the proxy that fails or a CONNECT that gets
 * no answer within 30 s ({@code connect_failed}), a CONNECT answered with anything but 200
 * ({@code refused}, by status and the proxy's reason header), an established tunnel closed or reset
 * by the far side ({@code closed}), and stalls ({@code stalls}: a bulk download or a ping answer
 * with no byte for 30 s, a slow reader that could read but got no byte for 30 s). A failed
 * tunnel is opened again after a back-off (1 s, doubling to 30 s), so the load stays at TUNNELS.
 */
public final class Soak {

    static final int SLOW_RATE = 4096;
    static final long BULK_BYTES = 16L << 20;
    static final int BULK_PER_TUNNEL = 4;
    static final long STREAM_BYTES = 1L << 40;
    /**
     * Socket buffers of the harness's own sockets: the clients' receive buffers and the origin's
     * send buffers, fixed (no autotuning) so that the machine's TCP memory (tcp_mem, shared by all
     * sockets) goes to the proxy's sockets, as on a proxy host whose clients and origins are
     * elsewhere. Slow readers and idle tunnels get a thin link's 64 KiB, bulk 256 KiB.
     */
    static final int SMALL_BUFFER = 64 * 1024;
    static final int BULK_BUFFER = 256 * 1024;
    static final long SAMPLE_NS = TimeUnit.SECONDS.toNanos(10);
    static final long STALL_NS = TimeUnit.SECONDS.toNanos(30);
    static final long PING_NS = TimeUnit.SECONDS.toNanos(60);
    static final long RAMP_LIMIT_NS = TimeUnit.MINUTES.toNanos(3);
    static final long TICK_NS = TimeUnit.MILLISECONDS.toNanos(100);
    /** CONNECTs in flight at once while tunnels are being opened. */
    static final int MAX_PENDING = 64;

    public static void main(String[] args) throws Exception {
        switch (args[0]) {
            case "origin" -> origin(Integer.parseInt(args[1]));
            case "load" -> new Load(args).run();
            default -> throw new IllegalArgumentException("unknown mode " + args[0]);
        }
    }

    static InetSocketAddress address(String hostPort) {
        int colon = hostPort.lastIndexOf(':');
        return new InetSocketAddress(hostPort.substring(0, colon), Integer.parseInt(hostPort.substring(colon + 1)));
    }

    // ---------------------------------------------------------------- origin

    /** The origin's one read buffer: its connections hold no buffer of their own. */
    static final ByteBuffer ORIGIN_READ = ByteBuffer.allocateDirect(16 * 1024);
    /** The bytes every body is cut from. */
    static final ByteBuffer BODY = body();

    static ByteBuffer body() {
        ByteBuffer b = ByteBuffer.allocateDirect(256 * 1024);
        for (int i = 0; i < b.capacity(); i++) {
            b.put((byte) ('a' + i % 26));
        }
        return b.flip().asReadOnlyBuffer();
    }

    static void origin(int port) throws IOException {
        Selector selector = Selector.open();
        ServerSocketChannel server = ServerSocketChannel.open();
        server.bind(new InetSocketAddress("127.0.0.1", port), 4096);
        server.configureBlocking(false);
        server.register(selector, SelectionKey.OP_ACCEPT);
        System.out.println("soak origin ready on " + port);
        System.out.flush();
        while (true) {
            selector.select();
            Iterator<SelectionKey> it = selector.selectedKeys().iterator();
            while (it.hasNext()) {
                SelectionKey key = it.next();
                it.remove();
                try {
                    if (key.isAcceptable()) {
                        SocketChannel ch;
                        while ((ch = server.accept()) != null) {
                            ch.configureBlocking(false);
                            ch.setOption(java.net.StandardSocketOptions.TCP_NODELAY, true);
                            ch.register(selector, SelectionKey.OP_READ, new OriginConn());
                        }
                    } else {
                        ((OriginConn) key.attachment()).service(key);
                    }
                } catch (IOException | RuntimeException e) {
                    // One connection's failure (a reset, a client gone) ends that connection only;
                    // an accept that fails (out of descriptors) is retried on the next select.
                    if (!key.isAcceptable()) {
                        key.cancel();
                        key.channel().close();
                    } else {
                        System.err.println("origin: accept failed: " + e);
                    }
                }
            }
        }
    }

    /** One origin connection: reads a request head, sends its response, waits for the next head. */
    static final class OriginConn {
        private final byte[] head = new byte[512];
        private int headLen;
        private ByteBuffer responseHead;
        private long bodyLeft;

        void service(SelectionKey key) throws IOException {
            SocketChannel ch = (SocketChannel) key.channel();
            if (responseHead != null) {
                if (!send(ch)) {
                    return;
                }
                key.interestOps(SelectionKey.OP_READ);
            }
            ByteBuffer in = ORIGIN_READ.clear();
            if (ch.read(in) < 0) {
                ch.close();
                return;
            }
            in.flip();
            while (in.hasRemaining()) {
                if (headLen == head.length) {
                    throw new IOException("request head longer than " + head.length);
                }
                head[headLen++] = in.get();
                if (headLen >= 4 && head[headLen - 4] == '\r' && head[headLen - 3] == '\n' && head[headLen - 2] == '\r'
                        && head[headLen - 1] == '\n') {
                    if (in.hasRemaining()) {
                        throw new IOException("request pipelined behind another: not this origin's client");
                    }
                    respond(ch, new String(head, 0, headLen, StandardCharsets.US_ASCII));
                    headLen = 0;
                    if (!send(ch)) {
                        key.interestOps(SelectionKey.OP_WRITE);
                    }
                }
            }
        }

        private void respond(SocketChannel ch, String request) throws IOException {
            String path = request.split(" ", 3)[1];
            if (path.equals("/ping")) {
                bodyLeft = 4;
            } else if (path.equals("/stream")) {
                bodyLeft = STREAM_BYTES;
                ch.setOption(java.net.StandardSocketOptions.SO_SNDBUF, SMALL_BUFFER);
            } else if (path.startsWith("/bytes/")) {
                bodyLeft = Long.parseLong(path.substring("/bytes/".length()));
                ch.setOption(java.net.StandardSocketOptions.SO_SNDBUF, BULK_BUFFER);
            } else {
                throw new IOException("unknown path " + path);
            }
            responseHead = ByteBuffer.wrap(("HTTP/1.1 200 OK\r\nContent-Length: " + bodyLeft + "\r\n\r\n")
                    .getBytes(StandardCharsets.US_ASCII));
        }

        /** Writes until the response is out (true) or the socket is full (false). */
        private boolean send(SocketChannel ch) throws IOException {
            if (responseHead.hasRemaining()) {
                ch.write(responseHead);
                if (responseHead.hasRemaining()) {
                    return false;
                }
            }
            while (bodyLeft > 0) {
                ByteBuffer slice = BODY.duplicate();
                slice.limit((int) Math.min(slice.capacity(), bodyLeft));
                bodyLeft -= ch.write(slice);
                if (slice.hasRemaining()) {
                    return false;
                }
            }
            responseHead = null;
            return true;
        }
    }

    // ---------------------------------------------------------------- load generator

    enum Kind {
        IDLE, SLOW, BULK;

        String label() {
            return name().toLowerCase(Locale.ROOT);
        }
    }

    enum State {
        WAITING, CONNECTING, HANDSHAKE, RESPONSE, QUIET
    }

    /** One tunnel slot: its kind is fixed; the connection behind it may be opened again and again. */
    static final class Tunnel {
        final int index;
        final Kind kind;
        State state = State.WAITING;
        SocketChannel ch;
        SelectionKey key;
        long retryAt;
        long backoff;
        /** When the current phase began: the connect, the CONNECT, the request. */
        long since;
        long lastByte;
        ByteBuffer out;
        final byte[] head = new byte[1024];
        int headLen;
        boolean inBody;
        long bodyLeft;
        int downloads;
        long allowance;
        boolean stalled;
        long nextPing;

        Tunnel(int index, Kind kind) {
            this.index = index;
            this.kind = kind;
        }
    }

    static final class Load {
        final InetSocketAddress proxy;
        final InetSocketAddress origin;
        final int count;
        final long holdNs;
        final long pid;
        final String admin;
        final Path csv;
        final Tunnel[] tunnels;
        final byte[] connect;
        final ByteBuffer read = ByteBuffer.allocateDirect(256 * 1024);
        final PriorityQueue<Tunnel> waiting = new PriorityQueue<>((a, b) -> Long.compare(a.retryAt, b.retryAt));
        final Random random = new Random(42);
        Selector selector;
        int pending;

        // Read by the sampler thread.
        final AtomicInteger[] established = {new AtomicInteger(), new AtomicInteger(), new AtomicInteger()};
        final LongAdder opened = new LongAdder();
        final LongAdder connectFailed = new LongAdder();
        final LongAdder refused = new LongAdder();
        final LongAdder closed = new LongAdder();
        final LongAdder stalls = new LongAdder();
        final LongAdder bytes = new LongAdder();
        final Map<String, LongAdder> reasons = new ConcurrentHashMap<>();
        final long start = System.nanoTime();
        volatile long holdStart;
        PrintStream rows;

        Load(String[] args) throws IOException {
            proxy = address(args[1]);
            origin = address(args[2]);
            count = Integer.parseInt(args[3]);
            holdNs = (long) (Double.parseDouble(args[4]) * 60e9);
            String[] mix = args[5].split(":");
            pid = Long.parseLong(args[6]);
            admin = args[7].equals("-") ? null : args[7];
            csv = Path.of(args[8]);
            int idle = Integer.parseInt(mix[0]);
            int slow = Integer.parseInt(mix[1]);
            int bulk = Integer.parseInt(mix[2]);
            int total = idle + slow + bulk;
            int nSlow = (int) Math.round((double) count * slow / total);
            int nBulk = (int) Math.round((double) count * bulk / total);
            List<Kind> kinds = new ArrayList<>();
            for (int i = 0; i < count; i++) {
                kinds.add(i < nSlow ? Kind.SLOW : i < nSlow + nBulk ? Kind.BULK : Kind.IDLE);
            }
            // Shuffled, so that every stage of the ramp opens all three kinds.
            Collections.shuffle(kinds, new Random(7));
            tunnels = new Tunnel[count];
            for (int i = 0; i < count; i++) {
                tunnels[i] = new Tunnel(i, kinds.get(i));
                waiting.add(tunnels[i]);
            }
            String authority = origin.getAddress().getHostAddress() + ":" + origin.getPort();
            connect = ("CONNECT " + authority + " HTTP/1.1\r\nHost: " + authority + "\r\n\r\n")
                    .getBytes(StandardCharsets.US_ASCII);
        }

        void run() throws Exception {
            selector = Selector.open();
            rows = new PrintStream(Files.newOutputStream(csv), true, StandardCharsets.US_ASCII);
            rows.println(Sampler.HEADER);
            Sampler sampler = new Sampler(this);
            ScheduledExecutorService every = Executors.newSingleThreadScheduledExecutor(r -> {
                Thread t = new Thread(r, "sampler");
                t.setDaemon(true);
                return t;
            });
            every.scheduleAtFixedRate(sampler::sample, 0, SAMPLE_NS, TimeUnit.NANOSECONDS);
            System.err.printf(Locale.ROOT, "soak: %d tunnels (%d idle, %d slow, %d bulk) through %s, held %.1f min%n",
                    count, kindCount(Kind.IDLE), kindCount(Kind.SLOW), kindCount(Kind.BULK), proxy, holdNs / 60e9);
            long nextTick = System.nanoTime();
            long tick = 0;
            while (true) {
                long now = System.nanoTime();
                if (holdStart == 0 && (upNow() == count || now - start > RAMP_LIMIT_NS)) {
                    holdStart = now;
                    System.err.printf(Locale.ROOT, "soak: %d of %d tunnels up after %.1f s; holding%n", upNow(), count,
                            (now - start) / 1e9);
                }
                if (holdStart != 0 && now - holdStart >= holdNs) {
                    break;
                }
                openDue(now);
                long wait = Math.max(1, TimeUnit.NANOSECONDS.toMillis(nextTick - now));
                selector.select(wait);
                Iterator<SelectionKey> it = selector.selectedKeys().iterator();
                while (it.hasNext()) {
                    SelectionKey key = it.next();
                    it.remove();
                    Tunnel t = (Tunnel) key.attachment();
                    try {
                        ready(t, key);
                    } catch (IOException e) {
                        fail(t, e);
                    }
                }
                now = System.nanoTime();
                while (now >= nextTick) {
                    tick(now, tick++);
                    nextTick += TICK_NS;
                }
            }
            every.shutdown();
            every.awaitTermination(30, TimeUnit.SECONDS);
            sampler.sample();
            for (Tunnel t : tunnels) {
                if (t.ch != null) {
                    t.ch.close();
                }
            }
            rows.close();
            System.err.println("soak: done; tunnels closed");
        }

        int kindCount(Kind k) {
            int n = 0;
            for (Tunnel t : tunnels) {
                n += t.kind == k ? 1 : 0;
            }
            return n;
        }

        int upNow() {
            return established[0].get() + established[1].get() + established[2].get();
        }

        /** Opens tunnels whose back-off is over, keeping at most MAX_PENDING CONNECTs in flight. */
        void openDue(long now) {
            while (pending < MAX_PENDING && !waiting.isEmpty() && waiting.peek().retryAt <= now) {
                Tunnel t = waiting.poll();
                pending++;
                t.state = State.CONNECTING;
                t.since = now;
                t.headLen = 0;
                try {
                    t.ch = SocketChannel.open();
                    t.ch.configureBlocking(false);
                    t.ch.setOption(java.net.StandardSocketOptions.TCP_NODELAY, true);
                    t.ch.setOption(java.net.StandardSocketOptions.SO_RCVBUF, t.kind == Kind.BULK ? BULK_BUFFER : SMALL_BUFFER);
                    t.out = ByteBuffer.wrap(connect);
                    if (t.ch.connect(proxy)) {
                        t.state = State.HANDSHAKE;
                        t.key = t.ch.register(selector, SelectionKey.OP_WRITE, t);
                    } else {
                        t.state = State.CONNECTING;
                        t.key = t.ch.register(selector, SelectionKey.OP_CONNECT, t);
                    }
                } catch (IOException e) {
                    fail(t, e);
                }
            }
        }

        void ready(Tunnel t, SelectionKey key) throws IOException {
            if (!key.isValid()) {
                return;
            }
            long now = System.nanoTime();
            if (key.isConnectable()) {
                t.ch.finishConnect();
                t.state = State.HANDSHAKE;
                key.interestOps(SelectionKey.OP_WRITE);
                return;
            }
            if (key.isWritable()) {
                t.ch.write(t.out);
                if (!t.out.hasRemaining()) {
                    key.interestOps(t.kind == Kind.SLOW && t.state == State.RESPONSE && t.allowance <= 0 ? 0 : SelectionKey.OP_READ);
                }
                return;
            }
            if (!key.isReadable()) {
                return;
            }
            ByteBuffer buf = read.clear();
            if (t.kind == Kind.SLOW && t.state == State.RESPONSE) {
                buf.limit((int) Math.min(buf.capacity(), t.allowance));
            }
            int n = t.ch.read(buf);
            if (n < 0) {
                throw new IOException(t.state == State.HANDSHAKE ? "closed before the CONNECT answer" : "closed");
            }
            if (n == 0) {
                return;
            }
            if (t.stalled) {
                // How long a stall lasted is in the load generator's log, one line per stall.
                System.err.printf(Locale.ROOT, "soak: slow tunnel %d received again after %.1f s without a byte%n",
                        t.index, (now - t.lastByte) / 1e9);
                t.stalled = false;
            }
            t.lastByte = now;
            bytes.add(n);
            buf.flip();
            switch (t.state) {
                case HANDSHAKE -> handshake(t, buf, now);
                case RESPONSE -> response(t, buf, now);
                default -> throw new IOException("unexpected bytes on a quiet tunnel");
            }
        }

        /** Feeds the head parser; true when the head is complete (the rest of buf is body). */
        static boolean headDone(Tunnel t, ByteBuffer buf) throws IOException {
            while (buf.hasRemaining()) {
                if (t.headLen == t.head.length) {
                    throw new IOException("answer head longer than " + t.head.length + " bytes");
                }
                byte b = buf.get();
                t.head[t.headLen++] = b;
                int n = t.headLen;
                if (b == '\n' && n >= 4 && t.head[n - 2] == '\r' && t.head[n - 3] == '\n' && t.head[n - 4] == '\r') {
                    return true;
                }
            }
            return false;
        }

        void handshake(Tunnel t, ByteBuffer buf, long now) throws IOException {
            if (!headDone(t, buf)) {
                return;
            }
            String head = new String(t.head, 0, t.headLen, StandardCharsets.ISO_8859_1);
            t.headLen = 0;
            if (!head.startsWith("HTTP/1.1 200") && !head.startsWith("HTTP/1.0 200")) {
                pending--;
                refused.increment();
                count("refused_" + statusAndReason(head));
                drop(t, now, true);
                return;
            }
            if (buf.hasRemaining()) {
                throw new IOException("bytes after the CONNECT answer's head");
            }
            pending--;
            opened.increment();
            established[t.kind.ordinal()].incrementAndGet();
            t.backoff = 0;
            t.downloads = 0;
            t.allowance = SLOW_RATE;
            t.state = State.QUIET;
            t.key.interestOps(SelectionKey.OP_READ);
            switch (t.kind) {
                case IDLE -> t.nextPing = now + (long) (random.nextDouble() * PING_NS);
                case SLOW -> request(t, "/stream", now);
                case BULK -> request(t, "/bytes/" + BULK_BYTES, now);
            }
        }

        /** "503_connection_limit": the status and the proxy's reason header, if it sends one. */
        static String statusAndReason(String head) {
            String[] lines = head.split("\r\n");
            String[] status = lines[0].split(" ");
            String reason = "";
            for (String line : lines) {
                String lower = line.toLowerCase(Locale.ROOT);
                if (lower.startsWith("x-egress-proxy-reason:") || lower.startsWith("x-squid-error:")) {
                    reason = "_" + line.substring(line.indexOf(':') + 1).trim().split(" ")[0];
                }
            }
            return (status.length > 1 ? status[1] : "?") + reason;
        }

        void request(Tunnel t, String path, long now) throws IOException {
            t.state = State.RESPONSE;
            t.inBody = false;
            t.headLen = 0;
            t.since = now;
            t.lastByte = now;
            t.out = ByteBuffer.wrap(("GET " + path + " HTTP/1.1\r\nHost: origin\r\n\r\n").getBytes(StandardCharsets.US_ASCII));
            t.ch.write(t.out);
            if (t.out.hasRemaining()) {
                t.key.interestOps(SelectionKey.OP_WRITE);
            }
        }

        void response(Tunnel t, ByteBuffer buf, long now) throws IOException {
            if (t.kind == Kind.SLOW) {
                t.allowance -= buf.remaining();
                if (t.allowance <= 0) {
                    t.key.interestOps(0);
                }
            }
            if (!t.inBody) {
                if (!headDone(t, buf)) {
                    return;
                }
                String head = new String(t.head, 0, t.headLen, StandardCharsets.ISO_8859_1);
                if (!head.startsWith("HTTP/1.1 200")) {
                    throw new IOException("origin answered " + head.lines().findFirst().orElse(head));
                }
                t.bodyLeft = Long.parseLong(contentLengthText(head));
                t.inBody = true;
            }
            if (buf.remaining() > t.bodyLeft) {
                throw new IOException("more bytes than the response's Content-Length");
            }
            t.bodyLeft -= buf.remaining();
            if (t.bodyLeft > 0) {
                return;
            }
            switch (t.kind) {
                case IDLE -> {
                    t.state = State.QUIET;
                    t.nextPing = now + PING_NS;
                }
                case BULK -> {
                    if (++t.downloads < BULK_PER_TUNNEL) {
                        request(t, "/bytes/" + BULK_BYTES, now);
                    } else {
                        // Done with this tunnel: a new one takes its place at once.
                        drop(t, now, false);
                    }
                }
                case SLOW -> throw new IOException("an endless download ended");
            }
        }

        static String contentLengthText(String head) {
            for (String line : head.split("\r\n")) {
                int colon = line.indexOf(':');
                if (colon > 0 && line.substring(0, colon).trim().equalsIgnoreCase("content-length")) {
                    return line.substring(colon + 1).trim();
                }
            }
            throw new IllegalStateException("no content-length in " + head);
        }

        /** Every 100 ms: a tenth of the tunnels get their second's read allowance, pings and stall checks. */
        void tick(long now, long tick) {
            for (int i = (int) (tick % 10); i < tunnels.length; i += 10) {
                Tunnel t = tunnels[i];
                try {
                    switch (t.state) {
                        case CONNECTING, HANDSHAKE -> {
                            if (now - t.since > STALL_NS) {
                                fail(t, new IOException("no CONNECT answer in 30 s"));
                            }
                        }
                        case QUIET -> {
                            if (t.kind == Kind.IDLE && now >= t.nextPing) {
                                request(t, "/ping", now);
                            }
                        }
                        case RESPONSE -> {
                            if (t.kind == Kind.SLOW) {
                                t.allowance = Math.min(t.allowance + SLOW_RATE, 2L * SLOW_RATE);
                                if (t.key.interestOps() == 0) {
                                    t.key.interestOps(SelectionKey.OP_READ);
                                }
                                if (now - t.lastByte > STALL_NS && !t.stalled) {
                                    t.stalled = true;
                                    stalls.increment();
                                    count("stall_slow");
                                }
                            } else if (now - t.lastByte > STALL_NS) {
                                stalls.increment();
                                count("stall_" + (t.kind == Kind.IDLE ? "ping" : "bulk"));
                                drop(t, now, true);
                            }
                        }
                        default -> { }
                    }
                } catch (IOException e) {
                    fail(t, e);
                }
            }
        }

        /** A tunnel that failed: counted by where it was and why, then opened again after a back-off. */
        void fail(Tunnel t, IOException e) {
            long now = System.nanoTime();
            String why = e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage();
            if (t.state == State.CONNECTING || t.state == State.HANDSHAKE) {
                pending--;
                connectFailed.increment();
                count("connect_" + why);
            } else {
                closed.increment();
                count("closed_" + t.kind.label() + "_" + why);
            }
            drop(t, now, true);
        }

        /** Closes the tunnel's connection and queues the slot to be opened again. */
        void drop(Tunnel t, long now, boolean failed) {
            if (t.state == State.QUIET || t.state == State.RESPONSE) {
                established[t.kind.ordinal()].decrementAndGet();
            }
            if (t.ch != null) {
                try {
                    t.ch.close();
                } catch (IOException ignored) {
                    // closing a socket that failed: nothing more to learn
                }
            }
            t.ch = null;
            t.key = null;
            t.state = State.WAITING;
            if (failed) {
                t.backoff = t.backoff == 0 ? TimeUnit.SECONDS.toNanos(1) : Math.min(2 * t.backoff, TimeUnit.SECONDS.toNanos(30));
                t.retryAt = now + t.backoff;
            } else {
                t.retryAt = now;
            }
            waiting.add(t);
        }

        void count(String reason) {
            reasons.computeIfAbsent(reason.replaceAll("[^A-Za-z0-9_.:-]+", "_"), r -> new LongAdder()).increment();
        }
    }

    // ---------------------------------------------------------------- sampler

    /** Every 10 s, a CSV row: the proxy's memory and descriptors, the load's tunnels and errors. */
    static final class Sampler {
        static final String HEADER = "t_s,phase,rss_kb,fds,threads,tunnels,idle,slow,bulk,opened,connect_failed,refused,"
                + "closed,stalls,bytes,tcp_mem_kb,proxy_sock_kb,held_bytes,budget_bytes,jvm_direct_bytes,netty_direct_bytes,heap_used_bytes,"
                + "pressure_ms,rcvq_drops,retrans_segs,rto_timeouts,proxy_tunnels,proxy_connections,proxy_rejected,proxy_pauses,proxy_splices,proxy_bytes,errors";
        private final Load load;
        private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();

        Sampler(Load load) {
            this.load = load;
        }

        synchronized void sample() {
            try {
                long now = System.nanoTime();
                double t = (now - load.start) / 1e9;
                long hold = load.holdStart;
                String phase = hold == 0 ? "ramp" : "hold";
                Map<String, String> status = procStatus(load.pid);
                long fds;
                try (Stream<Path> s = Files.list(Path.of("/proc/" + load.pid + "/fd"))) {
                    fds = s.count();
                }
                Map<String, Double> m = load.admin == null ? Map.of() : metrics(load.admin);
                Map<String, Long> tcp = tcpCounters();
                Map<String, Long> errors = new TreeMap<>();
                load.reasons.forEach((k, v) -> errors.put(k, v.sum()));
                for (Map.Entry<String, Double> e : m.entrySet()) {
                    if (e.getKey().startsWith("rejected_") && e.getValue() > 0) {
                        errors.put("proxy_" + e.getKey(), e.getValue().longValue());
                    }
                }
                StringBuilder err = new StringBuilder();
                errors.forEach((k, v) -> err.append(err.length() == 0 ? "" : ";").append(k).append('=').append(v));
                int idle = load.established[Kind.IDLE.ordinal()].get();
                int slow = load.established[Kind.SLOW.ordinal()].get();
                int bulk = load.established[Kind.BULK.ordinal()].get();
                String row = String.format(Locale.ROOT,
                        "%.1f,%s,%s,%d,%s,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%s,%s,%s,%s,%s,%d,%d,%d,%d,%s,%s,%s,%s,%s,%s,%s",
                        t, phase, kb(status.get("VmRSS")), fds, status.getOrDefault("Threads", ""), idle + slow + bulk,
                        idle, slow, bulk, load.opened.sum(), load.connectFailed.sum(), load.refused.sum(),
                        load.closed.sum(), load.stalls.sum(), load.bytes.sum(), tcpMemKb(), proxySocketKb(),
                        num(m, "egress_proxy_memory_held_bytes"), num(m, "egress_proxy_memory_budget_bytes"),
                        num(m, "jvm_buffer_memory_used_bytes{id=\"direct\"}"), num(m, "netty_direct"), num(m, "heap"),
                        tcp.getOrDefault("TcpExt.TCPMemoryPressuresChrono", -1L), tcp.getOrDefault("TcpExt.TCPRcvQDrop", -1L),
                        tcp.getOrDefault("Tcp.RetransSegs", -1L), tcp.getOrDefault("TcpExt.TCPTimeouts", -1L),
                        num(m, "egress_proxy_tunnels_active"), num(m, "egress_proxy_connections_active"),
                        num(m, "rejected"), num(m, "egress_proxy_memory_budget_pauses_total"),
                        num(m, "egress_proxy_tunnel_splices_total"), num(m, "bytes"), err);
                load.rows.println(row);
                System.err.printf(Locale.ROOT, "soak %5.0f s %s: rss %d MiB, fds %d, tunnels %d (%d/%d/%d), errors %s%n",
                        t, phase, Long.parseLong(kb(status.get("VmRSS"))) / 1024, fds, idle + slow + bulk, idle, slow,
                        bulk, err.length() == 0 ? "none" : err);
            } catch (IOException | RuntimeException e) {
                System.err.println("soak: sample failed: " + e);
            }
        }

        static String kb(String v) {
            return v == null ? "0" : v.replaceAll("[^0-9]", "");
        }

        static String num(Map<String, Double> m, String name) {
            Double v = m.get(name);
            return v == null ? "" : String.format(Locale.ROOT, "%.0f", v);
        }

        static Map<String, String> procStatus(long pid) throws IOException {
            Map<String, String> out = new TreeMap<>();
            for (String line : Files.readAllLines(Path.of("/proc/" + pid + "/status"))) {
                int colon = line.indexOf(':');
                if (colon > 0) {
                    out.put(line.substring(0, colon), line.substring(colon + 1).trim());
                }
            }
            return out;
        }

        /**
         * The network namespace's TCP counters (/proc/net/netstat and /proc/net/snmp, what nstat
         * shows), as "TcpExt.NAME" and "Tcp.NAME": time in TCP memory pressure, segments dropped
         * because a receive queue could not take them, retransmissions and retransmission timeouts.
         * In bench/run.sh's own namespace they count the soak's sockets only (since the run began).
         */
        static Map<String, Long> tcpCounters() throws IOException {
            Map<String, Long> out = new TreeMap<>();
            for (String file : new String[] {"/proc/net/netstat", "/proc/net/snmp"}) {
                List<String> lines = Files.readAllLines(Path.of(file));
                for (int i = 0; i + 1 < lines.size(); i++) {
                    String[] names = lines.get(i).split("\\s+");
                    String[] values = lines.get(i + 1).split("\\s+");
                    if (!names[0].equals(values[0]) || names.length != values.length
                            || !(names[0].equals("TcpExt:") || names[0].equals("Tcp:"))) {
                        continue;
                    }
                    for (int j = 1; j < names.length; j++) {
                        try {
                            out.put(names[0].replace(":", ".") + names[j], Long.parseLong(values[j]));
                        } catch (NumberFormatException e) {
                            // a header line read as values: skip
                        }
                    }
                    i++;
                }
            }
            return out;
        }

        /** The kernel's TCP buffer memory, all sockets of the machine (/proc/net/sockstat, in pages). */
        static long tcpMemKb() throws IOException {
            for (String line : Files.readAllLines(Path.of("/proc/net/sockstat"))) {
                if (line.startsWith("TCP:")) {
                    String[] f = line.split("\\s+");
                    for (int i = 1; i + 1 < f.length; i++) {
                        if (f[i].equals("mem")) {
                            return Long.parseLong(f[i + 1]) * 4;
                        }
                    }
                }
            }
            return 0;
        }

        /**
         * Kernel memory of the proxy's own sockets (receive queues and send queues, {@code ss -tm}):
         * those on the proxy's port (its client side) and those to the origin's (its upstream side;
         * only the proxy connects there). Bytes a proxy leaves in the kernel are not in its RSS.
         * -1 if ss fails.
         */
        long proxySocketKb() {
            String proxyPort = ":" + load.proxy.getPort();
            String originPort = ":" + load.origin.getPort();
            long bytes = 0;
            try {
                Process p = new ProcessBuilder("ss", "-tmnH", "state", "established").redirectErrorStream(true).start();
                boolean proxys = false;
                for (String line : new String(p.getInputStream().readAllBytes(), StandardCharsets.US_ASCII).split("\n")) {
                    String[] f = line.trim().split("\\s+");
                    if (line.contains("skmem:(")) {
                        if (proxys) {
                            bytes += skmem(line, "r") + skmem(line, "w");
                        }
                        proxys = false;
                    } else if (f.length >= 4) {
                        proxys = f[2].endsWith(proxyPort) || f[3].endsWith(originPort);
                    }
                }
                p.waitFor();
            } catch (IOException e) {
                return -1;
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return -1;
            }
            return bytes / 1024;
        }

        /** One field of an {@code ss -m} skmem:(r0,rb131072,t0,tb46080,f0,w0,o0,bl0,d0) group. */
        static long skmem(String line, String field) {
            String group = line.substring(line.indexOf("skmem:(") + 7, line.indexOf(')', line.indexOf("skmem:(")));
            for (String kv : group.split(",")) {
                if (kv.startsWith(field) && kv.length() > field.length() && Character.isDigit(kv.charAt(field.length()))) {
                    return Long.parseLong(kv.substring(field.length()));
                }
            }
            return 0;
        }

        /**
         * egress-proxy's scrape, the few series the soak reports: as named, plus heap (the JVM heap
         * in use), netty_direct (the pooled allocator's direct memory), rejected (all reasons), rejected_REASON and bytes (both
         * directions). Empty if the scrape fails (the row then shows blanks).
         */
        Map<String, Double> metrics(String url) {
            Map<String, Double> m = new TreeMap<>();
            String text;
            try {
                text = http.send(HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(5)).build(),
                        HttpResponse.BodyHandlers.ofString()).body();
            } catch (IOException e) {
                return m;
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return m;
            }
            for (String line : text.split("\n")) {
                if (line.startsWith("#") || line.isBlank()) {
                    continue;
                }
                int space = line.lastIndexOf(' ');
                String name = line.substring(0, space);
                double v;
                try {
                    v = Double.parseDouble(line.substring(space + 1));
                } catch (NumberFormatException e) {
                    continue;
                }
                m.put(name, v);
                if (name.startsWith("jvm_memory_used_bytes{") && name.contains("area=\"heap\"")) {
                    m.merge("heap", v, Double::sum);
                } else if (name.startsWith("netty_allocator_memory_used_bytes") && name.contains("memory_type=\"direct\"")) {
                    m.merge("netty_direct", v, Double::sum);
                } else if (name.startsWith("egress_proxy_rejected_total{")) {
                    m.merge("rejected", v, Double::sum);
                    m.put("rejected_" + label(name, "reason"), v);
                } else if (name.startsWith("egress_proxy_bytes_total{")) {
                    m.merge("bytes", v, Double::sum);
                }
            }
            return m;
        }

        static String label(String series, String label) {
            int i = series.indexOf(label + "=\"");
            if (i < 0) {
                return "";
            }
            int from = i + label.length() + 2;
            return series.substring(from, series.indexOf('"', from));
        }
    }
}
