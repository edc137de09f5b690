import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Iterator;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLEngineResult;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.TrustManagerFactory;

/**
 * The load generator and the upstream server of the egress-proxy benchmark, in one JDK-only file
 * (run with {@code java Bench.java MODE ...}). bench/run.sh drives it; every result is printed as a
 * line {@code RESULT <scenario> <metric> <value>} for the driver to collect.
 *
 * <pre>
 * upstream ECHO_PORT HTTP_PORT          echo server and keep-alive HTTP responder (one selector thread)
 * connect-rate TARGET SECONDS WORKERS   new connection + CONNECT + 16-byte exchange + close, WORKERS at once
 * rr TARGET SECONDS TUNNELS             persistent tunnels, 64-byte ping-pong, one in flight per tunnel
 * bulk TARGET SECONDS TUNNELS           tunnels streaming both ways through the echo server
 * http TARGET SECONDS CONNECTIONS       GET with keep-alive (through the proxy, or direct)
 * idle TARGET COUNT[,COUNT] PROXY_PID   hold COUNT idle tunnels at once (growing to each count in
 *                                       turn), report the proxy's RSS growth per tunnel
 * startup PROXY_HOST:PORT TARGET -- CMD launch CMD, time until the first CONNECT is answered 200
 * curve TARGET PLAN WINDOW SPANS WARM [LOG -- CMD]
 *                                       load in phases (PLAN), counted per WINDOW seconds from the
 *                                       moment CMD's port accepts: see {@link #curve}
 * </pre>
 *
 * TARGET is {@code proxy=HOST:PORT,echo=HOST:PORT,http=HOST:PORT[,auth=USER:PASSWORD][,tls=CERT.pem]};
 * without {@code proxy=} the load goes straight to the upstream (the "direct" column). With
 * {@code auth=} every CONNECT and proxied GET carries {@code Proxy-Authorization: Basic ...}; with
 * {@code tls=} the load generator speaks TLS to the proxy port (trusting the PEM certificate given),
 * a full handshake per new connection: connect-rate adds an SSLEngine to its event loop, http wraps
 * its sockets in SSLSockets; rr, bulk, idle and startup refuse it.
 */
public final class Bench {

    public static void main(String[] args) throws Exception {
        switch (args[0]) {
            case "upstream" -> upstream(Integer.parseInt(args[1]), Integer.parseInt(args[2]));
            case "connect-rate" -> connectRate(Target.parse(args[1]), seconds(args[2]), Integer.parseInt(args[3]));
            case "rr" -> rr(Target.parse(args[1]), seconds(args[2]), Integer.parseInt(args[3]));
            case "bulk" -> bulk(Target.parse(args[1]), seconds(args[2]), Integer.parseInt(args[3]));
            case "http" -> http(Target.parse(args[1]), seconds(args[2]), Integer.parseInt(args[3]));
            case "idle" -> idle(Target.parse(args[1]), Arrays.stream(args[2].split(",")).mapToInt(Integer::parseInt).toArray(),
                    Long.parseLong(args[3]));
            case "startup" -> startup(args);
            case "curve" -> curve(args);
            default -> throw new IllegalArgumentException("unknown mode " + args[0]);
        }
    }

    private static long seconds(String s) {
        return (long) (Double.parseDouble(s) * 1_000_000_000L);
    }

    /**
     * Where the load goes; {@code proxyAuthorization} is the header line every request to the proxy
     * carries (or ""), {@code tls} the client context for a TLS proxy port (or null).
     */
    record Target(InetSocketAddress proxy, InetSocketAddress echo, InetSocketAddress http, String proxyAuthorization,
            SSLContext tls) {
        static Target parse(String spec) throws Exception {
            InetSocketAddress proxy = null;
            InetSocketAddress echo = null;
            InetSocketAddress http = null;
            String proxyAuthorization = "";
            SSLContext tls = null;
            for (String part : spec.split(",")) {
                String[] kv = part.split("=", 2);
                if (kv[0].equals("auth")) {
                    proxyAuthorization = "Proxy-Authorization: Basic "
                            + java.util.Base64.getEncoder().encodeToString(kv[1].getBytes(StandardCharsets.UTF_8)) + "\r\n";
                    continue;
                }
                if (kv[0].equals("tls")) {
                    tls = clientContext(Path.of(kv[1]));
                    continue;
                }
                String[] hp = kv[1].split(":");
                InetSocketAddress a = new InetSocketAddress(hp[0], Integer.parseInt(hp[1]));
                switch (kv[0]) {
                    case "proxy" -> proxy = a;
                    case "echo" -> echo = a;
                    case "http" -> http = a;
                    default -> throw new IllegalArgumentException(part);
                }
            }
            return new Target(proxy, echo, http, proxyAuthorization, tls);
        }

        /** A TLS client context that trusts only the proxy's certificate (PEM). */
        static SSLContext clientContext(Path certificate) throws Exception {
            java.security.KeyStore trust = java.security.KeyStore.getInstance("PKCS12");
            trust.load(null, null);
            try (InputStream in = Files.newInputStream(certificate)) {
                int i = 0;
                for (java.security.cert.Certificate c : java.security.cert.CertificateFactory.getInstance("X.509")
                        .generateCertificates(in)) {
                    trust.setCertificateEntry("proxy-" + i++, c);
                }
            }
            TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
            tmf.init(trust);
            SSLContext ctx = SSLContext.getInstance("TLS");
            ctx.init(null, tmf.getTrustManagers(), null);
            return ctx;
        }

        /** The CONNECT request to the echo server, with the credentials if any. */
        byte[] connectRequest() {
            String authority = echo.getAddress().getHostAddress() + ":" + echo.getPort();
            return ("CONNECT " + authority + " HTTP/1.1\r\nHost: " + authority + "\r\n" + proxyAuthorization + "\r\n")
                    .getBytes(StandardCharsets.US_ASCII);
        }

        /** For the scenarios that have no TLS client: fails rather than measure something else. */
        private void plainOnly() throws IOException {
            if (tls != null) {
                throw new IOException("this scenario does not speak TLS to the proxy (connect-rate and http do)");
            }
        }

        /** Like {@link #tunnel()}, as a (blocking) SocketChannel, for the event-driven scenarios. */
        SocketChannel tunnelChannel() throws IOException {
            plainOnly();
            SocketChannel ch = SocketChannel.open();
            ch.setOption(java.net.StandardSocketOptions.TCP_NODELAY, true);
            if (proxy == null) {
                ch.connect(echo);
                return ch;
            }
            ch.connect(proxy);
            ch.write(ByteBuffer.wrap(connectRequest()));
            String head = readConnectHead(java.nio.channels.Channels.newInputStream(ch));
            if (!head.startsWith("HTTP/1.1 200") && !head.startsWith("HTTP/1.0 200")) {
                ch.close();
                throw new IOException("CONNECT refused: " + head.lines().findFirst().orElse(head));
            }
            return ch;
        }

        /** A connected socket to the echo server: through a CONNECT tunnel, or direct. */
        Socket tunnel() throws IOException {
            plainOnly();
            Socket s = new Socket();
            s.setTcpNoDelay(true);
            s.setSoTimeout(30_000);
            if (proxy == null) {
                s.connect(echo, 10_000);
                return s;
            }
            s.connect(proxy, 10_000);
            s.getOutputStream().write(connectRequest());
            String head = readConnectHead(s.getInputStream());
            if (!head.startsWith("HTTP/1.1 200") && !head.startsWith("HTTP/1.0 200")) {
                s.close();
                throw new IOException("CONNECT refused: " + head.lines().findFirst().orElse(head));
            }
            return s;
        }
    }

    /**
     * The answer to a CONNECT, read in chunks rather than byte by byte (one read per byte would cost
     * the load generator some forty system calls per tunnel). Nothing may follow the head: the echo
     * server speaks only when spoken to.
     */
    static String readConnectHead(InputStream in) throws IOException {
        byte[] buf = new byte[1024];
        int len = 0;
        while (true) {
            int n = in.read(buf, len, buf.length - len);
            if (n < 0) {
                throw new IOException("closed after " + len + " bytes of head");
            }
            len += n;
            String head = new String(buf, 0, len, StandardCharsets.ISO_8859_1);
            int end = head.indexOf("\r\n\r\n");
            if (end >= 0) {
                if (end + 4 != len) {
                    throw new IOException("bytes after the CONNECT answer's head: " + head);
                }
                return head;
            }
            if (len == buf.length) {
                throw new IOException("CONNECT answer head longer than " + buf.length + " bytes");
            }
        }
    }

    static String readHead(InputStream in) throws IOException {
        StringBuilder sb = new StringBuilder();
        int matched = 0;
        while (matched < 4) {
            int b = in.read();
            if (b < 0) {
                throw new IOException("closed after " + sb.length() + " bytes of head");
            }
            sb.append((char) b);
            matched = (b == (matched % 2 == 0 ? '\r' : '\n')) ? matched + 1 : (b == '\r' ? 1 : 0);
        }
        return sb.toString();
    }

    /**
     * Latency samples in nanoseconds, one array per worker, merged at the end. A timed instance (the
     * curve mode) also keeps when each sample was taken ({@link System#nanoTime()}), to place it in
     * its window.
     */
    static final class Samples {
        private long[] values = new long[1 << 16];
        private long[] at; // null unless timed
        private int size;

        Samples() {
        }

        Samples(boolean timed) {
            at = timed ? new long[values.length] : null;
        }

        void add(long v) {
            if (size == values.length) {
                values = Arrays.copyOf(values, size * 2);
                if (at != null) {
                    at = Arrays.copyOf(at, size * 2);
                }
            }
            if (at != null) {
                at[size] = System.nanoTime();
            }
            values[size++] = v;
        }

        int size() {
            return size;
        }

        long value(int i) {
            return values[i];
        }

        long at(int i) {
            return at[i];
        }

        static long[] merge(List<Samples> all) {
            int n = 0;
            for (Samples s : all) {
                n += s.size;
            }
            long[] out = new long[n];
            int i = 0;
            for (Samples s : all) {
                System.arraycopy(s.values, 0, out, i, s.size);
                i += s.size;
            }
            Arrays.sort(out);
            return out;
        }
    }

    static double percentileMs(long[] sorted, double p) {
        if (sorted.length == 0) {
            return Double.NaN;
        }
        int idx = (int) Math.min(sorted.length - 1, Math.ceil(p / 100.0 * sorted.length) - 1);
        return sorted[Math.max(0, idx)] / 1e6;
    }

    static void result(String scenario, String metric, double value) {
        System.out.printf(Locale.ROOT, "RESULT %s %s %.3f%n", scenario, metric, value);
    }

    /**
     * CPU time the load generator's core and the proxy's core spent over a measured window, from
     * /proc/stat, reported per unit of work (a tunnel, a round trip, a request, a megabyte). The
     * cores come from the environment (BENCH_LOAD_CPU, BENCH_PROXY_CPU, set by bench/run.sh); without
     * them nothing is reported. The load core's cost per unit bounds what any proxy can show on this
     * harness: at most 1e6 / us_per_unit units a second once that core is full.
     */
    static final class CoreTime {
        private final long t0 = System.nanoTime();
        private final long[][] before = ticks();

        /** Busy and total ticks of each CPU (cpu0, cpu1, ...); busy leaves out idle and iowait. */
        static long[][] ticks() {
            List<long[]> cpus = new ArrayList<>();
            try {
                for (String line : Files.readAllLines(Path.of("/proc/stat"))) {
                    if (!line.startsWith("cpu") || line.startsWith("cpu ")) {
                        continue;
                    }
                    String[] f = line.trim().split("\\s+");
                    long total = 0;
                    long idle = Long.parseLong(f[4]) + Long.parseLong(f[5]);
                    for (int i = 1; i <= Math.min(8, f.length - 1); i++) {
                        total += Long.parseLong(f[i]);
                    }
                    cpus.add(new long[] {total - idle, total});
                }
            } catch (IOException | RuntimeException e) {
                return new long[0][];
            }
            return cpus.toArray(new long[0][]);
        }

        /** Prints {@code <core>_core_us_per_<unit>} for the load core and, through a proxy, the proxy's. */
        void report(String scenario, String unit, double units, boolean proxied) {
            double secs = (System.nanoTime() - t0) / 1e9;
            long[][] after = ticks();
            report(scenario, "load", System.getenv("BENCH_LOAD_CPU"), after, secs, unit, units);
            if (proxied) {
                report(scenario, "proxy", System.getenv("BENCH_PROXY_CPU"), after, secs, unit, units);
            }
        }

        private void report(String scenario, String core, String cpu, long[][] after, double secs, String unit, double units) {
            if (cpu == null || units <= 0) {
                return;
            }
            int i = Integer.parseInt(cpu);
            if (i >= before.length || i >= after.length || after[i][1] == before[i][1]) {
                return;
            }
            double busy = (double) (after[i][0] - before[i][0]) / (after[i][1] - before[i][1]);
            result(scenario, core + "_core_us_per_" + unit, busy * secs * 1e6 / units);
        }
    }

    /**
     * The load core's busy ticks sampled every 50 ms through a curve, so that a span can say what
     * that core spent per unit of work in it (the bound it sets on any proxy's rate, as
     * {@link CoreTime} does for the table). Nothing is sampled without BENCH_LOAD_CPU.
     */
    static final class CoreSamples {
        private final List<long[]> samples = java.util.Collections.synchronizedList(new ArrayList<>());
        private final int cpu;
        private volatile boolean stopped;

        CoreSamples() {
            String c = System.getenv("BENCH_LOAD_CPU");
            cpu = c == null ? -1 : Integer.parseInt(c);
            if (cpu < 0) {
                return;
            }
            Thread t = new Thread(() -> {
                while (!stopped) {
                    long[][] now = CoreTime.ticks();
                    if (cpu < now.length) {
                        samples.add(new long[] {System.nanoTime(), now[cpu][0], now[cpu][1]});
                    }
                    java.util.concurrent.locks.LockSupport.parkNanos(50_000_000L);
                }
            }, "core-samples");
            t.setDaemon(true);
            t.start();
        }

        void stop() {
            stopped = true;
        }

        /** Microseconds the load core was busy between the samples nearest inside [from, to], per unit; NaN if unknown. */
        double usPer(long from, long to, double units) {
            long[] a = null;
            long[] b = null;
            synchronized (samples) {
                for (long[] x : samples) {
                    if (a == null && x[0] >= from) {
                        a = x;
                    }
                    if (x[0] <= to) {
                        b = x;
                    }
                }
            }
            if (a == null || b == null || b[0] <= a[0] || b[2] == a[2] || units <= 0) {
                return Double.NaN;
            }
            // The core's busy share between the samples, taken for the whole span the units were counted in.
            double busy = (double) (b[1] - a[1]) / (b[2] - a[2]);
            return busy * (to - from) / 1e3 / units;
        }
    }

    interface Worker {
        void run(Samples samples, AtomicLong ops, long deadline) throws Exception;
    }

    /** Runs {@code workers} threads until the deadline; fails if any worker fails. */
    static long[] runWorkers(int workers, long durationNanos, AtomicLong ops, Worker w) throws Exception {
        List<Samples> all = new ArrayList<>();
        for (int i = 0; i < workers; i++) {
            all.add(new Samples());
        }
        runWorkers(all, System.nanoTime() + durationNanos, ops, w);
        return Samples.merge(all);
    }

    /** Runs a thread per element of {@code all} (its samples) until the deadline; fails if any worker fails. */
    static void runWorkers(List<Samples> all, long deadline, AtomicLong ops, Worker w) throws Exception {
        List<Thread> threads = new ArrayList<>();
        AtomicLong errors = new AtomicLong();
        StringBuilder firstError = new StringBuilder();
        long durationNanos = Math.max(0, deadline - System.nanoTime());
        for (Samples s : all) {
            Thread t = new Thread(() -> {
                try {
                    w.run(s, ops, deadline);
                } catch (Exception e) {
                    if (errors.incrementAndGet() == 1) {
                        synchronized (firstError) {
                            firstError.append(e);
                        }
                    }
                }
            });
            threads.add(t);
            t.start();
        }
        for (Thread t : threads) {
            t.join(durationNanos / 1_000_000 + 60_000);
        }
        if (errors.get() > 0) {
            throw new IllegalStateException(errors.get() + " worker(s) failed, first: " + firstError);
        }
    }

    /**
     * connect-rate, event-driven: one thread and one selector drive {@code workers} connections at
     * once, each a loop of connect, CONNECT, 16-byte exchange and close. A thread per worker would
     * spend the load generator's core on context switches (64 threads blocking in turn), lowering
     * the "direct" limit and adding scheduling noise to every column.
     */
    static void connectRate(Target t, long duration, int workers) throws Exception {
        Samples samples = new Samples();
        CoreTime cores = new CoreTime();
        long start = System.nanoTime();
        long tunnels = connectLoop(t, workers, start + duration, samples, null);
        double secs = (System.nanoTime() - start) / 1e9;
        long[] lat = Samples.merge(List.of(samples));
        result("connect-rate", "tunnels_per_s", tunnels / secs);
        result("connect-rate", "setup_p50_ms", percentileMs(lat, 50));
        result("connect-rate", "setup_p99_ms", percentileMs(lat, 99));
        cores.report("connect-rate", "tunnel", tunnels, t.proxy != null);
    }

    /**
     * The connect-rate loop: {@code workers} connections at once until the deadline, then waits for
     * those still open to finish. Adds each setup latency to {@code setup} and, when {@code done} is
     * not null, a sample to it for each completed exchange; returns the number completed.
     */
    static long connectLoop(Target t, int workers, long deadline, Samples setup, Samples done) throws Exception {
        byte[] connect = t.proxy == null ? null : t.connectRequest();
        SSLContext tls = t.proxy == null ? null : t.tls;
        InetSocketAddress to = t.proxy != null ? t.proxy : t.echo;
        long[] ops = {0};
        try (Selector selector = Selector.open()) {
            for (int i = 0; i < workers; i++) {
                ConnectLoop.open(selector, to, connect, tls);
            }
            selectUntilDone(selector, workers, deadline, " connection(s) still open 30 s after the end", key -> {
                ConnectLoop c = (ConnectLoop) key.attachment();
                if (!c.step(key, setup)) {
                    return false;
                }
                ops[0]++;
                if (done != null) {
                    done.add(0);
                }
                c.close((SocketChannel) key.channel());
                if (System.nanoTime() < deadline) {
                    ConnectLoop.open(selector, to, connect, tls);
                    return false;
                }
                return true;
            });
        }
        return ops[0];
    }

    /** What a ready key does; true when its connection is finished and leaves the loop. */
    interface Ready {
        boolean finished(SelectionKey key) throws IOException;
    }

    /**
     * Dispatches ready keys until {@code open} connections have finished; fails if some are still
     * busy 30 s after the deadline ({@code stuck} says what they are doing).
     */
    static void selectUntilDone(Selector selector, int open, long deadline, String stuck, Ready ready) throws IOException {
        while (open > 0) {
            selector.select(1000);
            Iterator<SelectionKey> it = selector.selectedKeys().iterator();
            while (it.hasNext()) {
                SelectionKey key = it.next();
                it.remove();
                if (ready.finished(key)) {
                    open--;
                }
            }
            if (System.nanoTime() > deadline + 30_000_000_000L) {
                throw new IllegalStateException(open + stuck);
            }
        }
    }

    /**
     * One connect-rate connection: connect, [TLS handshake,] [CONNECT and its 200,] 16 bytes out and
     * back, done. Plain and TLS connections go through the same steps; with TLS, every write and
     * read passes through a {@link TlsClient} as well.
     */
    static final class ConnectLoop {
        private static final byte[] MSG = "0123456789abcdef".getBytes(StandardCharsets.US_ASCII);
        private final long t0 = System.nanoTime();
        private ByteBuffer out; // wraps shared arrays that are only ever read
        private final ByteBuffer in = ByteBuffer.allocate(1024);
        private final TlsClient tls; // null: plain TCP
        private boolean tunnelUp;
        private boolean writing = true;

        private ConnectLoop(byte[] connect, SSLContext tls) {
            tunnelUp = connect == null;
            out = ByteBuffer.wrap(connect != null ? connect : MSG);
            this.tls = tls == null ? null : new TlsClient(tls);
        }

        static void open(Selector selector, InetSocketAddress to, byte[] connect, SSLContext tls) throws IOException {
            SocketChannel ch = SocketChannel.open();
            ch.configureBlocking(false);
            ch.setOption(java.net.StandardSocketOptions.TCP_NODELAY, true);
            ConnectLoop c = new ConnectLoop(connect, tls);
            if (ch.connect(to)) {
                c.connected(ch.register(selector, SelectionKey.OP_WRITE, c), null);
            } else {
                ch.register(selector, SelectionKey.OP_CONNECT, c);
            }
        }

        private void connected(SelectionKey key, Samples samples) throws IOException {
            key.interestOps(SelectionKey.OP_WRITE);
            if (tls != null) {
                tls.begin();
            } else if (tunnelUp && samples != null) {
                samples.add(System.nanoTime() - t0); // direct: setup is the TCP connect
            }
        }

        /** Advances on readiness; true when the exchange is complete. */
        boolean step(SelectionKey key, Samples samples) throws IOException {
            SocketChannel ch = (SocketChannel) key.channel();
            if (key.isConnectable()) {
                if (!ch.finishConnect()) {
                    return false;
                }
                connected(key, samples);
            }
            if (tls != null && !tls.handshake(ch, key)) {
                return false; // the handshake waits for the socket (its interest set by handshake)
            }
            if (writing) {
                // The interest is OP_WRITE while writing: the socket was ready (or has just
                // connected or finished the handshake, when a write is worth a try anyway).
                if (!(tls != null ? tls.write(ch, out) : write(ch, out))) {
                    key.interestOps(SelectionKey.OP_WRITE);
                    return false;
                }
                writing = false;
                key.interestOps(SelectionKey.OP_READ);
                return false;
            }
            if ((tls != null ? tls.read(ch, in) : ch.read(in)) < 0) {
                throw new IOException("closed by the " + (tunnelUp ? "echo server" : "proxy") + " after "
                        + in.position() + " bytes");
            }
            if (!tunnelUp) {
                String head = new String(in.array(), 0, in.position(), StandardCharsets.ISO_8859_1);
                int end = head.indexOf("\r\n\r\n");
                if (end < 0) {
                    if (!in.hasRemaining()) {
                        throw new IOException("CONNECT answer head longer than 1024 bytes");
                    }
                    return false;
                }
                if (!head.startsWith("HTTP/1.1 200") && !head.startsWith("HTTP/1.0 200")) {
                    throw new IOException("CONNECT refused: " + head.lines().findFirst().orElse(head));
                }
                if (end + 4 != in.position()) {
                    throw new IOException("bytes after the CONNECT answer's head: " + head);
                }
                samples.add(System.nanoTime() - t0);
                tunnelUp = true;
                in.clear();
                out = ByteBuffer.wrap(MSG);
                writing = true;
                key.interestOps(SelectionKey.OP_WRITE);
                return false;
            }
            return in.position() >= MSG.length;
        }

        private static boolean write(SocketChannel ch, ByteBuffer src) throws IOException {
            ch.write(src);
            return !src.hasRemaining();
        }

        /** Closes the connection; over TLS after a close_notify, as a well-behaved client does. */
        void close(SocketChannel ch) throws IOException {
            if (tls != null) {
                tls.closeNotify(ch);
            }
            ch.close();
        }
    }

    /**
     * The client end of TLS on a non-blocking channel, for connect-rate. The engine is made without
     * the peer's host and port, so the JDK looks up no session to resume: every connection makes a
     * full handshake (TLS 1.3 between two JDK 17s, the JDK's default key exchange and ciphers).
     * Records are small here (a CONNECT, a 200, 16 bytes): one wrap makes one record.
     */
    static final class TlsClient {
        private static final ByteBuffer EMPTY = ByteBuffer.allocate(0);
        private final SSLEngine engine;
        private final ByteBuffer netOut; // read mode: bytes still to send
        private final ByteBuffer netIn; // write mode: bytes received, not yet unwrapped
        private final ByteBuffer plainIn; // write mode: unwrapped application bytes
        private boolean handshaken;

        TlsClient(SSLContext ctx) {
            engine = ctx.createSSLEngine();
            engine.setUseClientMode(true);
            netOut = ByteBuffer.allocate(engine.getSession().getPacketBufferSize()).flip();
            netIn = ByteBuffer.allocate(engine.getSession().getPacketBufferSize());
            plainIn = ByteBuffer.allocate(engine.getSession().getApplicationBufferSize());
        }

        void begin() throws IOException {
            engine.beginHandshake();
        }

        /** Drives the handshake as far as the socket allows; true once it is complete. */
        boolean handshake(SocketChannel ch, SelectionKey key) throws IOException {
            while (!handshaken) {
                if (!flush(ch)) {
                    key.interestOps(SelectionKey.OP_WRITE);
                    return false;
                }
                switch (engine.getHandshakeStatus()) {
                    case NEED_WRAP -> {
                        netOut.clear();
                        SSLEngineResult r = engine.wrap(EMPTY, netOut);
                        netOut.flip();
                        expectOk(r);
                    }
                    case NEED_UNWRAP, NEED_UNWRAP_AGAIN -> {
                        netIn.flip();
                        SSLEngineResult r = engine.unwrap(netIn, plainIn);
                        netIn.compact();
                        if (r.getStatus() == SSLEngineResult.Status.BUFFER_UNDERFLOW) {
                            int n = ch.read(netIn);
                            if (n < 0) {
                                throw new IOException("closed by the proxy during the TLS handshake");
                            }
                            if (n == 0) {
                                key.interestOps(SelectionKey.OP_READ);
                                return false;
                            }
                        } else {
                            expectOk(r);
                        }
                    }
                    case NEED_TASK -> runTasks();
                    default -> handshaken = true; // FINISHED, NOT_HANDSHAKING
                }
            }
            return true;
        }

        /** Wraps {@code src} and sends it; true once all of it is on the socket. */
        boolean write(SocketChannel ch, ByteBuffer src) throws IOException {
            while (true) {
                if (!flush(ch)) {
                    return false;
                }
                if (!src.hasRemaining()) {
                    return true;
                }
                netOut.clear();
                SSLEngineResult r = engine.wrap(src, netOut);
                netOut.flip();
                expectOk(r);
            }
        }

        /**
         * Reads what the socket has and unwraps it into {@code dst}; the application bytes added, or
         * -1 at the end of the stream with none. Post-handshake messages (TLS 1.3 session tickets)
         * add none.
         */
        int read(SocketChannel ch, ByteBuffer dst) throws IOException {
            int n = ch.read(netIn);
            netIn.flip();
            try {
                while (netIn.hasRemaining()) {
                    SSLEngineResult r = engine.unwrap(netIn, plainIn);
                    if (r.getStatus() == SSLEngineResult.Status.BUFFER_UNDERFLOW) {
                        break;
                    }
                    if (r.getStatus() == SSLEngineResult.Status.CLOSED) {
                        n = -1;
                        break;
                    }
                    expectOk(r);
                    if (r.getHandshakeStatus() == SSLEngineResult.HandshakeStatus.NEED_TASK) {
                        runTasks();
                    }
                }
            } finally {
                netIn.compact();
            }
            plainIn.flip();
            int added = Math.min(plainIn.remaining(), dst.remaining());
            dst.put(dst.position(), plainIn, plainIn.position(), added).position(dst.position() + added);
            plainIn.position(plainIn.position() + added).compact();
            return added == 0 && n < 0 ? -1 : added;
        }

        /** Sends a close_notify, as far as the socket takes it without waiting. */
        void closeNotify(SocketChannel ch) throws IOException {
            engine.closeOutbound();
            netOut.clear();
            engine.wrap(EMPTY, netOut);
            netOut.flip();
            ch.write(netOut);
        }

        private boolean flush(SocketChannel ch) throws IOException {
            if (netOut.hasRemaining()) {
                ch.write(netOut);
            }
            return !netOut.hasRemaining();
        }

        private void runTasks() {
            for (Runnable task; (task = engine.getDelegatedTask()) != null; ) {
                task.run();
            }
        }

        private static void expectOk(SSLEngineResult r) throws IOException {
            if (r.getStatus() != SSLEngineResult.Status.OK) {
                throw new IOException("TLS: unexpected " + r.getStatus() + " (" + r.getHandshakeStatus() + ")");
            }
        }
    }

    /**
     * rr, event-driven: one thread and one selector keep a 64-byte message in flight on each of
     * {@code tunnels} persistent tunnels (or direct connections) and time each round trip.
     */
    static void rr(Target t, long duration, int tunnels) throws Exception {
        long[] ops = {0};
        Samples samples = new Samples();
        long start;
        CoreTime cores;
        try (Selector selector = Selector.open()) {
            List<SocketChannel> channels = new ArrayList<>();
            for (int i = 0; i < tunnels; i++) {
                channels.add(t.tunnelChannel());
            }
            cores = new CoreTime();
            start = System.nanoTime();
            long deadline = start + duration;
            for (SocketChannel ch : channels) {
                ch.configureBlocking(false);
                PingPong pp = new PingPong();
                pp.send(ch);
                ch.register(selector, SelectionKey.OP_READ, pp);
            }
            selectUntilDone(selector, tunnels, deadline, " round trip(s) unanswered 30 s after the end", key -> {
                PingPong pp = (PingPong) key.attachment();
                SocketChannel ch = (SocketChannel) key.channel();
                if (!pp.receive(ch)) {
                    return false;
                }
                samples.add(System.nanoTime() - pp.sentAt);
                ops[0]++;
                if (System.nanoTime() < deadline) {
                    pp.send(ch);
                    return false;
                }
                key.cancel();
                return true;
            });
            for (SocketChannel ch : channels) {
                ch.close();
            }
        }
        double secs = (System.nanoTime() - start) / 1e9;
        long[] lat = Samples.merge(List.of(samples));
        result("rr", "ops_per_s", ops[0] / secs);
        result("rr", "p50_ms", percentileMs(lat, 50));
        result("rr", "p99_ms", percentileMs(lat, 99));
        result("rr", "p999_ms", percentileMs(lat, 99.9));
        cores.report("rr", "op", ops[0], t.proxy != null);
    }

    /** One rr connection: a 64-byte message out, the same 64 bytes back. */
    static final class PingPong {
        private static final byte[] MSG = new byte[64];
        private final ByteBuffer in = ByteBuffer.allocate(64);
        long sentAt;

        void send(SocketChannel ch) throws IOException {
            sentAt = System.nanoTime();
            ByteBuffer out = ByteBuffer.wrap(MSG);
            while (out.hasRemaining()) {
                ch.write(out); // 64 bytes fit an empty socket buffer: this does not spin
            }
        }

        boolean receive(SocketChannel ch) throws IOException {
            if (ch.read(in) < 0) {
                throw new IOException("tunnel closed after " + in.position() + " bytes of a round trip");
            }
            if (in.hasRemaining()) {
                return false;
            }
            in.clear();
            return true;
        }
    }

    static void bulk(Target t, long duration, int tunnels) throws Exception {
        AtomicLong received = new AtomicLong();
        List<Thread> threads = new ArrayList<>();
        List<Socket> sockets = new ArrayList<>();
        AtomicBoolean failed = new AtomicBoolean();
        for (int i = 0; i < tunnels; i++) {
            sockets.add(t.tunnel());
        }
        CoreTime cores = new CoreTime();
        long start = System.nanoTime();
        long deadline = start + duration;
        for (Socket s : sockets) {
            Thread writer = new Thread(() -> {
                byte[] chunk = new byte[64 * 1024];
                try {
                    OutputStream out = s.getOutputStream();
                    while (System.nanoTime() < deadline) {
                        out.write(chunk);
                    }
                    s.shutdownOutput();
                } catch (IOException e) {
                    failed.set(true);
                }
            });
            Thread reader = new Thread(() -> {
                byte[] buf = new byte[64 * 1024];
                try {
                    InputStream in = s.getInputStream();
                    int n;
                    while ((n = in.read(buf)) >= 0) {
                        if (System.nanoTime() <= deadline) {
                            received.addAndGet(n);
                        }
                    }
                } catch (IOException e) {
                    failed.set(true);
                }
            });
            threads.add(writer);
            threads.add(reader);
            writer.start();
            reader.start();
        }
        // The cores' time is taken at the deadline, with the bytes counted by then.
        for (long left; (left = deadline - System.nanoTime()) > 0; ) {
            java.util.concurrent.locks.LockSupport.parkNanos(left);
        }
        cores.report("bulk" + tunnels, "mb", 2.0 * received.get() / 1e6, t.proxy != null);
        for (Thread th : threads) {
            th.join(duration / 1_000_000 + 60_000);
        }
        for (Socket s : sockets) {
            s.close();
        }
        if (failed.get()) {
            throw new IllegalStateException("a bulk stream failed");
        }
        double secs = duration / 1e9;
        // Bytes sent equal bytes echoed back: count both directions.
        result("bulk" + tunnels, "mb_per_s", 2.0 * received.get() / secs / 1e6);
    }

    static void http(Target t, long duration, int connections) throws Exception {
        AtomicLong ops = new AtomicLong();
        CoreTime cores = new CoreTime();
        long start = System.nanoTime();
        AtomicLong reconnects = new AtomicLong();
        long[] lat = runWorkers(connections, duration, ops, httpWorker(t, reconnects));
        double secs = (System.nanoTime() - start) / 1e9;
        result("http", "req_per_s", ops.get() / secs);
        result("http", "p50_ms", percentileMs(lat, 50));
        result("http", "p99_ms", percentileMs(lat, 99));
        result("http", "reconnects_per_s", reconnects.get() / secs);
        cores.report("http", "request", ops.get(), t.proxy != null);
    }

    /**
     * One http connection's loop: GET with keep-alive until the deadline, each request's latency a
     * sample; reconnects (and counts in {@code reconnects}) when the proxy closes between requests.
     */
    static Worker httpWorker(Target t, AtomicLong reconnects) {
        String target = t.http.getAddress().getHostAddress() + ":" + t.http.getPort();
        byte[] request = (t.proxy == null
                ? "GET / HTTP/1.1\r\nHost: " + target + "\r\n\r\n"
                : "GET http://" + target + "/ HTTP/1.1\r\nHost: " + target + "\r\n" + t.proxyAuthorization + "\r\n")
                        .getBytes(StandardCharsets.US_ASCII);
        return (samples, count, deadline) -> {
            Socket s = null;
            InputStream in = null;
            OutputStream out = null;
            int served = 0;
            try {
                while (System.nanoTime() < deadline) {
                    if (s == null) {
                        s = new Socket();
                        s.setTcpNoDelay(true);
                        s.setSoTimeout(30_000);
                        s.connect(t.proxy == null ? t.http : t.proxy, 10_000);
                        if (t.proxy != null && t.tls != null) {
                            // A handshake per connection (the load keeps its connections alive:
                            // one each; a reconnect may resume the session, as a browser's would).
                            SSLSocket tls = (SSLSocket) t.tls.getSocketFactory().createSocket(s,
                                    t.proxy.getAddress().getHostAddress(), t.proxy.getPort(), true);
                            tls.startHandshake();
                            s = tls;
                        }
                        out = s.getOutputStream();
                        in = new java.io.BufferedInputStream(s.getInputStream(), 4096);
                        served = 0;
                    }
                    long t0 = System.nanoTime();
                    out.write(request);
                    String head;
                    try {
                        head = readHead(in);
                    } catch (IOException e) {
                        if (served == 0) {
                            throw e;
                        }
                        // The proxy does not keep client connections alive (tinyproxy): reconnect,
                        // as a client would, and count it.
                        s.close();
                        s = null;
                        reconnects.incrementAndGet();
                        continue;
                    }
                    if (!head.startsWith("HTTP/1.1 200") && !head.startsWith("HTTP/1.0 200")) {
                        throw new IOException("unexpected answer: " + head.lines().findFirst().orElse(head));
                    }
                    in.readNBytes(contentLength(head));
                    samples.add(System.nanoTime() - t0);
                    count.incrementAndGet();
                    served++;
                    if (head.toLowerCase(Locale.ROOT).contains("connection: close")) {
                        s.close();
                        s = null;
                        reconnects.incrementAndGet();
                    }
                }
            } finally {
                if (s != null) {
                    s.close();
                }
            }
        };
    }

    static int contentLength(String head) {
        for (String line : head.split("\r\n")) {
            int colon = line.indexOf(':');
            if (colon > 0 && line.substring(0, colon).trim().equalsIgnoreCase("content-length")) {
                return Integer.parseInt(line.substring(colon + 1).trim());
            }
        }
        throw new IllegalStateException("no content-length in " + head);
    }

    /**
     * Holds idle tunnels, {@code counts} at once in turn (4,000, then 4,000 more for 8,000), and
     * reports the proxy's RSS growth per tunnel held, each count against the RSS before the first
     * tunnel: what holding that many tunnels at once costs. (Measured from a second baseline after
     * closing the first batch, a proxy that keeps freed memory would be charged only for the
     * tunnels beyond the first batch.)
     */
    static void idle(Target t, int[] counts, long pid) throws Exception {
        long before = rssKb(pid);
        List<Socket> sockets = new ArrayList<>();
        try {
            for (int count : counts) {
                while (sockets.size() < count) {
                    sockets.add(t.tunnel());
                }
                // Let the proxy settle (buffers released after the handshakes) before reading its RSS.
                System.gc();
                long settleDeadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(3);
                long after = rssKb(pid);
                while (System.nanoTime() < settleDeadline) {
                    TimeUnit.MILLISECONDS.sleep(200);
                    after = Math.min(after, rssKb(pid));
                }
                result("idle" + count, "rss_kb_per_tunnel", (after - before) / (double) count);
                result("idle" + count, "rss_mb_total", after / 1024.0);
            }
        } finally {
            for (Socket s : sockets) {
                s.close();
            }
        }
    }

    static long rssKb(long pid) throws IOException {
        for (String line : Files.readAllLines(Path.of("/proc/" + pid + "/status"))) {
            if (line.startsWith("VmRSS:")) {
                return Long.parseLong(line.replaceAll("[^0-9]", ""));
            }
        }
        throw new IOException("no VmRSS for " + pid);
    }

    /**
     * startup PROXY TARGET -- command...: time from launch to the first answered CONNECT. The
     * proxy's output goes to a file that is printed if it never answers.
     */
    static void startup(String[] args) throws Exception {
        Target t = Target.parse(args[1]);
        List<String> command = new ArrayList<>(Arrays.asList(args).subList(3, args.length));
        Path log = Files.createTempFile("bench-startup", ".log");
        ProcessBuilder pb = new ProcessBuilder(command).redirectErrorStream(true)
                .redirectOutput(log.toFile());
        long t0 = System.nanoTime();
        Process p = pb.start();
        try {
            long deadline = t0 + TimeUnit.SECONDS.toNanos(30);
            while (true) {
                try (Socket s = t.tunnel()) {
                    break;
                } catch (IOException e) {
                    if (!p.isAlive() || System.nanoTime() > deadline) {
                        String why = p.isAlive() ? "no CONNECT answered within 30 s: " + e
                                : "the proxy exited with status " + p.exitValue() + " before answering a CONNECT";
                        throw new IllegalStateException(why + "\n--- its output:\n" + Files.readString(log));
                    }
                    TimeUnit.MILLISECONDS.sleep(5);
                }
            }
            result("startup", "first_connect_ms", (System.nanoTime() - t0) / 1e6);
            result("startup", "rss_mb", rssKb(p.pid()) / 1024.0);
        } finally {
            p.destroy();
            if (!p.waitFor(20, TimeUnit.SECONDS)) {
                p.destroyForcibly().waitFor();
            }
            Files.deleteIfExists(log);
        }
    }

    /**
     * One phase of a curve's plan: {@code connect-rate} or {@code http} with {@code workers}
     * connections (the table's loops), for {@code duration} nanoseconds.
     */
    record Phase(String kind, int workers, long duration) {
        /** {@code KIND:WORKERS:SECONDS[,KIND:WORKERS:SECONDS...]}, in order. */
        static List<Phase> parse(String spec) {
            List<Phase> plan = new ArrayList<>();
            for (String part : spec.split(",")) {
                String[] f = part.split(":");
                if (f.length != 3 || !(f[0].equals("connect-rate") || f[0].equals("http"))) {
                    throw new IllegalArgumentException("a phase is connect-rate|http:WORKERS:SECONDS, got " + part);
                }
                plan.add(new Phase(f[0], Integer.parseInt(f[1]), seconds(f[2])));
            }
            return plan;
        }

        /** What a window of this phase counts. */
        String unit() {
            return kind.equals("http") ? "requests" : "tunnels";
        }
    }

    /**
     * A phase as it ran: {@code latency} holds the setup latency of each tunnel (connect-rate) or
     * the latency of each request (http), {@code done} one sample per completed tunnel or request;
     * all timed. Set by the phase's thread, read after it is joined.
     */
    static final class PhaseRun {
        final Phase phase;
        final long start;
        final long end;
        final List<Samples> latency = new ArrayList<>();
        final List<Samples> done = new ArrayList<>();
        volatile Exception failure;

        PhaseRun(Phase phase, long start) {
            this.phase = phase;
            this.start = start;
            this.end = start + phase.duration;
        }

        /** Runs the phase's load until {@link #end}, in the calling thread. */
        void run(Target t) throws Exception {
            if (phase.kind.equals("connect-rate")) {
                Samples setup = new Samples(true);
                Samples tunnels = new Samples(true);
                latency.add(setup);
                done.add(tunnels);
                connectLoop(t, phase.workers, end, setup, tunnels);
            } else {
                for (int i = 0; i < phase.workers; i++) {
                    latency.add(new Samples(true));
                }
                done.addAll(latency); // a request is done when its latency is taken
                runWorkers(latency, end, new AtomicLong(), httpWorker(t, new AtomicLong()));
            }
        }

        /** Completed tunnels or requests in [from, to) and the p99 of the latencies taken then (NaN if none). */
        double[] count(long from, long to) {
            long n = 0;
            for (Samples s : done) {
                for (int i = 0; i < s.size(); i++) {
                    if (s.at(i) >= from && s.at(i) < to) {
                        n++;
                    }
                }
            }
            Samples in = new Samples();
            for (Samples s : latency) {
                for (int i = 0; i < s.size(); i++) {
                    if (s.at(i) >= from && s.at(i) < to) {
                        in.add(s.value(i));
                    }
                }
            }
            return new double[] {n, percentileMs(Samples.merge(List.of(in)), 99)};
        }

        /** When the first latency of this phase was taken (a CONNECT answered, a response read), or -1. */
        long first() {
            long first = Long.MAX_VALUE;
            for (Samples s : latency) {
                if (s.size() > 0) {
                    first = Math.min(first, s.at(0));
                }
            }
            return first == Long.MAX_VALUE ? -1 : first;
        }
    }

    /**
     * curve TARGET PLAN WINDOW SPANS WARM [LOG -- CMD...]: how a proxy serves a load that changes,
     * window by window. PLAN is phases {@code KIND:WORKERS:SECONDS} run one after the other
     * ({@code connect-rate:64:60}, {@code http:32:20,connect-rate:64:40}), each the table's loop
     * of that name; every phase must last whole windows of WINDOW seconds.
     *
     * <p>First the load generator warms its own code: WARM seconds of each phase's load straight to
     * the upstream, so that the first windows show the proxy starting, not the load generator. Then, with
     * a CMD, it launches the proxy (output to LOG), tries a TCP connect to the proxy port every
     * millisecond, and at the first that succeeds (the listener is open) takes the origin and starts
     * the first phase; without a CMD (direct, or a proxy already running) the origin is the end of
     * the warm-up. Each phase starts at its offset from the origin, whatever the previous one is
     * still finishing, and stops opening connections at its end.
     *
     * <p>Prints {@code RESULT curve listen_ms} (exec to the port accepting) and {@code RESULT curve
     * first_connect_ms} (exec to the first CONNECT answered 200, as the startup mode measures it but
     * under this load; {@code first_request_ms} when the first phase is http), then per window
     * {@code WINDOW <start_s> <tunnels|requests> <count> <per_s> <p99_ms>}: the tunnels (or
     * requests) completed in the window, and the p99 of the setup latencies (or request latencies)
     * taken in it, by the time each ended; "-" for a window without one. SPANS is
     * {@code NAME:FROM:TO[,...]} (seconds from the origin, within one phase) or "-": each printed as
     * {@code SPAN <name> <from_s> <to_s> <unit> <count> <per_s> <p99_ms>}, the p99 over all of the
     * span's latencies, followed (with BENCH_LOAD_CPU) by {@code SPANCORE <name> load_core_us_per_unit
     * <us>}: what the load generator's core spent per tunnel or request in the span, from which
     * {@code 1e6 / us} is the most that core allows per second through this proxy.
     */
    static void curve(String[] args) throws Exception {
        Target t = Target.parse(args[1]);
        List<Phase> plan = Phase.parse(args[2]);
        long window = seconds(args[3]);
        String spans = args[4];
        long warm = seconds(args[5]);
        Path log = null;
        List<String> command = List.of();
        if (args.length > 6) {
            if (args.length < 9 || !args[7].equals("--")) {
                throw new IllegalArgumentException("curve TARGET PLAN WINDOW SPANS WARM [LOG -- CMD...]");
            }
            log = Path.of(args[6]);
            command = Arrays.asList(args).subList(8, args.length);
        }
        for (Phase ph : plan) {
            if (ph.duration % window != 0) {
                throw new IllegalArgumentException("a phase of " + ph.duration / 1e9 + " s is not whole windows of "
                        + window / 1e9 + " s");
            }
        }
        if (warm > 0) {
            Target direct = new Target(null, t.echo, t.http, "", null);
            for (Phase ph : plan) {
                new PhaseRun(new Phase(ph.kind, ph.workers, warm), System.nanoTime()).run(direct);
            }
        }

        Process p = null;
        long exec = 0;
        long origin;
        try {
            if (!command.isEmpty()) {
                ProcessBuilder pb = new ProcessBuilder(command).redirectErrorStream(true).redirectOutput(log.toFile());
                exec = System.nanoTime();
                p = pb.start();
                Process proxy = p;
                // Also on an interrupt of the run (its SIGINT reaches the JVM too).
                Runtime.getRuntime().addShutdownHook(new Thread(proxy::destroyForcibly));
                origin = awaitListener(t.proxy, p, exec, log);
                result("curve", "listen_ms", (origin - exec) / 1e6);
            } else {
                origin = System.nanoTime();
            }

            CoreSamples core = new CoreSamples();
            List<PhaseRun> phases = new ArrayList<>();
            List<Thread> threads = new ArrayList<>();
            long at = origin;
            for (Phase ph : plan) {
                PhaseRun run = new PhaseRun(ph, at);
                phases.add(run);
                for (long left; (left = run.start - System.nanoTime()) > 0; ) {
                    java.util.concurrent.locks.LockSupport.parkNanos(left);
                }
                Thread th = new Thread(() -> {
                    try {
                        run.run(t);
                    } catch (Exception e) {
                        run.failure = e;
                    }
                }, "curve-" + ph.kind);
                th.start();
                threads.add(th);
                at = run.end;
            }
            for (Thread th : threads) {
                th.join();
            }
            core.stop();
            for (PhaseRun run : phases) {
                if (run.failure != null) {
                    throw new IllegalStateException(run.phase.kind + " failed: " + run.failure
                            + (log == null ? "" : "\n--- the proxy's output, last lines:\n" + tail(log, 20)), run.failure);
                }
            }
            if (p != null && phases.get(0).first() >= 0) {
                result("curve", phases.get(0).phase.kind.equals("http") ? "first_request_ms" : "first_connect_ms",
                        (phases.get(0).first() - exec) / 1e6);
            }
            for (PhaseRun run : phases) {
                for (long w = run.start; w < run.end; w += window) {
                    double[] c = run.count(w, w + window);
                    System.out.printf(Locale.ROOT, "WINDOW %.1f %s %d %.1f %s%n", (w - origin) / 1e9, run.phase.unit(),
                            (long) c[0], c[0] / (window / 1e9), Double.isNaN(c[1]) ? "-" : String.format(Locale.ROOT, "%.3f", c[1]));
                }
            }
            if (!spans.equals("-")) {
                for (String span : spans.split(",")) {
                    String[] f = span.split(":");
                    long from = origin + seconds(f[1]);
                    long to = origin + seconds(f[2]);
                    PhaseRun run = phases.stream().filter(r -> from >= r.start && to <= r.end).findFirst()
                            .orElseThrow(() -> new IllegalArgumentException("span " + span + " is not within one phase"));
                    double[] c = run.count(from, to);
                    System.out.printf(Locale.ROOT, "SPAN %s %s %s %s %d %.1f %s%n", f[0], f[1], f[2], run.phase.unit(),
                            (long) c[0], c[0] / ((to - from) / 1e9), Double.isNaN(c[1]) ? "-" : String.format(Locale.ROOT, "%.3f", c[1]));
                    double us = core.usPer(from, to, c[0]);
                    if (!Double.isNaN(us)) {
                        System.out.printf(Locale.ROOT, "SPANCORE %s load_core_us_per_unit %.1f%n", f[0], us);
                    }
                }
            }
        } finally {
            if (p != null) {
                p.destroy();
                if (!p.waitFor(20, TimeUnit.SECONDS)) {
                    p.destroyForcibly().waitFor();
                }
            }
        }
    }

    /**
     * Tries a TCP connect to the proxy port every millisecond until one succeeds; returns when it did
     * (the listener is open). Fails if the proxy exits or 60 s pass first.
     */
    static long awaitListener(InetSocketAddress proxy, Process p, long exec, Path log) throws Exception {
        long deadline = exec + TimeUnit.SECONDS.toNanos(60);
        while (true) {
            try (Socket s = new Socket()) {
                s.connect(proxy, 1000);
                return System.nanoTime();
            } catch (IOException e) {
                if (!p.isAlive() || System.nanoTime() > deadline) {
                    String why = p.isAlive() ? "the port did not accept within 60 s: " + e
                            : "the proxy exited with status " + p.exitValue() + " before its port accepted";
                    throw new IllegalStateException(why + "\n--- its output, last lines:\n" + tail(log, 20));
                }
                java.util.concurrent.locks.LockSupport.parkNanos(1_000_000);
            }
        }
    }

    static String tail(Path file, int lines) throws IOException {
        List<String> all = Files.readAllLines(file, StandardCharsets.ISO_8859_1);
        return String.join("\n", all.subList(Math.max(0, all.size() - lines), all.size()));
    }

    static void readFully(InputStream in, byte[] buf) throws IOException {
        int off = 0;
        while (off < buf.length) {
            int n = in.read(buf, off, buf.length - off);
            if (n < 0) {
                throw new IOException("closed after " + off + " of " + buf.length + " bytes");
            }
            off += n;
        }
    }

    /** Echo on one port, a keep-alive HTTP/1.1 responder on the other; one selector thread. */
    static void upstream(int echoPort, int httpPort) throws IOException {
        Selector selector = Selector.open();
        for (int port : new int[] {echoPort, httpPort}) {
            ServerSocketChannel server = ServerSocketChannel.open();
            server.bind(new InetSocketAddress("127.0.0.1", port), 4096);
            server.configureBlocking(false);
            server.register(selector, SelectionKey.OP_ACCEPT, port == httpPort);
        }
        byte[] body = "hello from the bench upstream\n".getBytes(StandardCharsets.US_ASCII);
        ByteBuffer response = ByteBuffer.wrap(("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
                + body.length + "\r\n\r\n" + new String(body, StandardCharsets.US_ASCII)).getBytes(StandardCharsets.US_ASCII));
        System.out.println("upstream ready");
        System.out.flush();
        while (true) {
            selector.select();
            Iterator<SelectionKey> it = selector.selectedKeys().iterator();
            while (it.hasNext()) {
                SelectionKey key = it.next();
                it.remove();
                try {
                    if (key.isAcceptable()) {
                        SocketChannel ch = ((ServerSocketChannel) key.channel()).accept();
                        if (ch == null) {
                            continue;
                        }
                        ch.configureBlocking(false);
                        ch.setOption(java.net.StandardSocketOptions.TCP_NODELAY, true);
                        ch.register(selector, SelectionKey.OP_READ, new Conn((Boolean) key.attachment()));
                    } else {
                        Conn c = (Conn) key.attachment();
                        c.service(key, response);
                    }
                } catch (IOException | RuntimeException e) {
                    // One connection's failure (a reset, a cancelled key) ends that connection only.
                    key.cancel();
                    key.channel().close();
                }
            }
        }
    }

    /** The selector thread's one read buffer: idle connections hold no buffer of their own. */
    static final ByteBuffer READ = ByteBuffer.allocateDirect(64 * 1024);

    /** One upstream connection: echoes, or answers each request head with the fixed response. */
    static final class Conn {
        final boolean http;
        final ByteBuffer in = READ;
        ByteBuffer pending;
        int matched;

        Conn(boolean http) {
            this.http = http;
        }

        void service(SelectionKey key, ByteBuffer response) throws IOException {
            SocketChannel ch = (SocketChannel) key.channel();
            if (pending != null) {
                ch.write(pending);
                if (pending.hasRemaining()) {
                    return;
                }
                pending = null;
                key.interestOps(SelectionKey.OP_READ);
            }
            in.clear();
            int n = ch.read(in);
            if (n < 0) {
                ch.close();
                return;
            }
            in.flip();
            ByteBuffer out;
            if (http) {
                int heads = 0;
                while (in.hasRemaining()) {
                    byte b = in.get();
                    matched = (b == (matched % 2 == 0 ? '\r' : '\n')) ? matched + 1 : (b == '\r' ? 1 : 0);
                    if (matched == 4) {
                        heads++;
                        matched = 0;
                    }
                }
                out = ByteBuffer.allocate(response.remaining() * heads);
                for (int i = 0; i < heads; i++) {
                    out.put(response.duplicate());
                }
                out.flip();
            } else {
                out = in;
            }
            ch.write(out);
            if (out.hasRemaining()) {
                pending = ByteBuffer.allocate(out.remaining()).put(out).flip();
                key.interestOps(SelectionKey.OP_WRITE);
            }
        }
    }
}
