package dev.egressproxy.testing;

import static org.awaitility.Awaitility.await;

import java.io.BufferedInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.SocketException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.regex.Pattern;

/**
 * An HTTP/1.1 origin that records exactly what arrives on the wire, for tests that must assert
 * what a server behind the proxy would see (request smuggling shows up here and nowhere else).
 *
 * <p>Plain blocking sockets on 127.0.0.1, port 0, one thread per connection, and a small strict
 * parser of its own that shares nothing with Netty: lines end in CRLF (a bare CR or LF is an
 * error), the head ends at the empty line, no obsolete line folding, header names are tokens, the
 * body is framed by a single {@code Transfer-Encoding: chunked} or a single {@code Content-Length}
 * (both, several, or a non-numeric length are errors), and a request with neither has no body.
 * Whatever follows a message on the connection is the next request. For every connection it keeps
 * each request (raw request line, header fields in order as sent, body decoded from chunked plus
 * the raw chunked bytes, chunk extensions and trailer fields) and any bytes it could not parse.
 *
 * <p>Each complete request is answered by the {@link Responder} in place when it arrives (by
 * default {@code 200} with a Content-Length body {@code "request N\n"}, N counting every request
 * the origin has received); behaviours for the awkward cases are built in (a huge header, 101,
 * close-delimited, chunked, hang up on the n-th request of a connection).
 *
 * <p>Parse errors and unexpected failures are recorded in {@link #errors()} for the test to check
 * at the end, as Netty's {@code ProxyServer.checkExceptions} does; a connection reset by the peer
 * is not an error (the proxy may close an upstream connection it no longer wants). {@link
 * #awaitQuiet(Duration)} waits until every connection opened so far has ended, so that a test can
 * assert final counts without racing the proxy.
 */
public final class RecordingOrigin implements AutoCloseable {

    /** Longest line (request line, header, chunk size or trailer) the parser accepts. */
    private static final int MAX_LINE = 256 * 1024;
    /** Largest body it keeps. */
    private static final long MAX_BODY = 64L * 1024 * 1024;
    /** Bytes of unparseable input it keeps per connection. */
    private static final int MAX_LEFTOVER = 1024 * 1024;
    /** The head {@link #hugeHeader(int)} sends around its long header value. */
    private static final String HUGE_HEAD_START = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Security-Policy: ";
    private static final String HUGE_HEAD_END = "\r\n\r\n";
    private static final Pattern TOKEN = Pattern.compile("[!#$%&'*+.^_`|~0-9A-Za-z-]+");
    private static final Pattern REQUEST_LINE =
            Pattern.compile("[!#$%&'*+.^_`|~0-9A-Za-z-]+ [\\x21-\\x7e\\x80-\\xff]+ HTTP/[0-9]\\.[0-9]");

    /** One header or trailer field, name as sent. */
    public record Field(String name, String value) {
        public boolean is(String other) {
            return name.equalsIgnoreCase(other);
        }
    }

    /** How the origin answers one request. */
    @FunctionalInterface
    public interface Responder {
        Reply reply(Request request) throws IOException;
    }

    /** Bytes to write for one request (possibly none), and whether to close the connection after them. */
    public record Reply(byte[] bytes, boolean close) {

        /** {@code 200 OK} with a Content-Length body and extra header lines ({@code "Name: value"}). */
        public static Reply ok(String body, String... headerLines) {
            return status("200 OK", body.getBytes(StandardCharsets.ISO_8859_1), headerLines);
        }

        /** A status ({@code "404 Not Found"}) with a Content-Length body and extra header lines. */
        public static Reply status(String status, byte[] body, String... headerLines) {
            StringBuilder head = new StringBuilder("HTTP/1.1 ").append(status).append("\r\n");
            for (String line : headerLines) {
                head.append(line).append("\r\n");
            }
            head.append("Content-Length: ").append(body.length).append("\r\n\r\n");
            return new Reply(concat(head.toString().getBytes(StandardCharsets.ISO_8859_1), body), false);
        }

        /** Exactly these bytes, then keep the connection (or close it). */
        public static Reply raw(String text, boolean close) {
            return new Reply(text.getBytes(StandardCharsets.ISO_8859_1), close);
        }

        /** Close the connection without answering. */
        public static Reply hangUp() {
            return new Reply(new byte[0], true);
        }
    }

    /** One request as it arrived. */
    public record Request(int number, int connection, int numberOnConnection, String requestLine, List<Field> headers,
            byte[] body, boolean chunked, byte[] rawChunked, List<String> chunkExtensions, List<Field> trailers,
            boolean complete) {

        public String method() {
            return requestLine.substring(0, requestLine.indexOf(' '));
        }

        public String target() {
            return requestLine.substring(requestLine.indexOf(' ') + 1, requestLine.lastIndexOf(' '));
        }

        /** Every value of header {@code name} (any case), one per line, in order. */
        public List<String> values(String name) {
            return headers.stream().filter(f -> f.is(name)).map(Field::value).toList();
        }

        /** Every value of trailer field {@code name} (any case), in order. */
        public List<String> trailerValues(String name) {
            return trailers.stream().filter(f -> f.is(name)).map(Field::value).toList();
        }

        /** The comma-separated list {@code name} carries over all its lines (RFC 9110 5.3), trimmed. */
        public List<String> list(String name) {
            return splitList(values(name));
        }

        public boolean has(String name) {
            return headers.stream().anyMatch(f -> f.is(name));
        }

        public String bodyText() {
            return new String(body, StandardCharsets.ISO_8859_1);
        }

        @Override
        public String toString() {
            StringBuilder sb = new StringBuilder("#").append(number).append(" (connection ").append(connection)
                    .append(", request ").append(numberOnConnection).append(complete ? "" : ", INCOMPLETE")
                    .append(") ").append(requestLine);
            for (Field f : headers) {
                sb.append(" | ").append(f.name()).append(": ").append(f.value());
            }
            sb.append(" | body ").append(body.length).append(" bytes").append(chunked ? " chunked" : "");
            if (!trailers.isEmpty()) {
                sb.append(" | trailers ").append(trailers);
            }
            return sb.toString();
        }
    }

    /** One connection the origin accepted. */
    public static final class Connection {
        public final int number;
        public final int remotePort;
        private final List<Request> requests = new CopyOnWriteArrayList<>();
        private final ByteArrayOutputStream leftover = new ByteArrayOutputStream();
        private volatile boolean ended;
        private volatile boolean hungUpByOrigin;
        private volatile boolean reset;

        Connection(int number, int remotePort) {
            this.number = number;
            this.remotePort = remotePort;
        }

        public List<Request> requests() {
            return List.copyOf(requests);
        }

        /** Bytes the parser could not take as (part of) a request: from the first bad byte to the end. */
        public synchronized byte[] leftover() {
            return leftover.toByteArray();
        }

        private synchronized void addLeftover(byte[] b, int off, int len) {
            int room = MAX_LEFTOVER - leftover.size();
            leftover.write(b, off, Math.max(0, Math.min(room, len)));
        }

        /** True once the connection is over: the peer closed it, it was reset, or the origin hung up. */
        public boolean ended() {
            return ended;
        }

        /** True when the origin closed it on purpose (a {@link Reply} with {@code close}). */
        public boolean hungUpByOrigin() {
            return hungUpByOrigin;
        }

        /** True when reading or writing failed with a reset (the peer closed with unread data). */
        public boolean reset() {
            return reset;
        }

        @Override
        public String toString() {
            return "connection " + number + " from port " + remotePort + ": " + requests.size() + " request(s), "
                    + leftover.size() + " leftover byte(s)" + (ended ? "" : ", open");
        }
    }

    private final ServerSocket server;
    private final ExecutorService executor = Executors.newCachedThreadPool(r -> {
        Thread t = new Thread(r, "recording-origin");
        t.setDaemon(true);
        return t;
    });
    private final List<Connection> connections = new CopyOnWriteArrayList<>();
    private final List<Request> requests = new CopyOnWriteArrayList<>();
    private final List<String> errors = new CopyOnWriteArrayList<>();
    private final List<Socket> open = new CopyOnWriteArrayList<>();
    private final AtomicInteger connectionCount = new AtomicInteger();
    private final AtomicInteger requestCount = new AtomicInteger();
    private volatile Responder responder = counting();

    public RecordingOrigin() throws IOException {
        server = new ServerSocket();
        server.bind(new InetSocketAddress(InetAddress.getByName("127.0.0.1"), 0), 128);
        executor.execute(this::acceptLoop);
    }

    public int port() {
        return server.getLocalPort();
    }

    /** Answers the requests that arrive from now on with {@code r}. */
    public RecordingOrigin responder(Responder r) {
        this.responder = r;
        return this;
    }

    /** Every connection accepted since the last {@link #reset()}, in order. */
    public List<Connection> connections() {
        return List.copyOf(connections);
    }

    /** Every request received since the last {@link #reset()}, in order of arrival. */
    public List<Request> requests() {
        return List.copyOf(requests);
    }

    /** Parse errors and unexpected failures, each naming its connection. */
    public List<String> errors() {
        return List.copyOf(errors);
    }

    /** Forgets all records and goes back to the default responder; call only when {@link #awaitQuiet quiet}. */
    public void reset() {
        connections.clear();
        requests.clear();
        errors.clear();
        requestCount.set(0);
        connectionCount.set(0);
        responder = counting();
    }

    /**
     * Waits until every connection the proxy has opened so far has been accepted and has ended.
     * The kernel completes a handshake before the accept loop sees it, so a probe connection of our
     * own is made first: the accept queue is first in, first out, so once the probe is accepted
     * every earlier connection is in the records. The probe is then dropped from them.
     */
    public void awaitQuiet(Duration deadline) throws IOException {
        try (Socket probe = new Socket()) {
            probe.connect(new InetSocketAddress(InetAddress.getByName("127.0.0.1"), port()), 5000);
            int port = probe.getLocalPort();
            await("the probe connection to be accepted").atMost(deadline).pollDelay(Duration.ZERO)
                    .pollInterval(Duration.ofMillis(2))
                    .until(() -> connections.stream().anyMatch(c -> c.remotePort == port));
            connections.removeIf(c -> c.remotePort == port);
        }
        await("every upstream connection to end").atMost(deadline).pollDelay(Duration.ZERO)
                .pollInterval(Duration.ofMillis(5))
                .until(() -> connections.stream().allMatch(c -> c.ended));
    }

    /** The default: {@code 200 OK} with the body {@code "request N\n"}; HEAD gets the length and no body. */
    public static Responder counting() {
        return r -> {
            String body = "request " + r.number() + "\n";
            if (r.method().equals("HEAD")) {
                return Reply.raw("HTTP/1.1 200 OK\r\nContent-Length: " + body.length() + "\r\n\r\n", false);
            }
            return Reply.ok(body);
        };
    }

    /**
     * {@code 200} carrying one {@code Content-Security-Policy} header so long that the head (status
     * line, headers and the empty line) is {@code headBytes} long; body {@code "ok"}.
     */
    public static Responder hugeHeader(int headBytes) {
        String value = hugeHeaderValue(headBytes);
        return r -> Reply.raw(HUGE_HEAD_START + value + HUGE_HEAD_END + "ok", false);
    }

    /** The Content-Security-Policy value {@link #hugeHeader(int)} sends for a head of {@code headBytes}. */
    public static String hugeHeaderValue(int headBytes) {
        return cspValue(headBytes - HUGE_HEAD_START.length() - HUGE_HEAD_END.length());
    }

    /** A plausible Content-Security-Policy value of exactly {@code length} characters. */
    private static String cspValue(int length) {
        StringBuilder sb = new StringBuilder("default-src 'self'; script-src 'self'");
        int i = 0;
        while (sb.length() < length) {
            sb.append(" https://cdn").append(i++).append(".example.net");
        }
        sb.setLength(length);
        return sb.toString();
    }

    /** {@code 101 Switching Protocols} to anything, keeping the connection open. */
    public static Responder switchingProtocols() {
        return r -> Reply.raw("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n", false);
    }

    /** {@code 200} with neither Content-Length nor chunked: the body ends when the origin closes. */
    public static Responder closeDelimited(byte[] body) {
        return r -> new Reply(concat("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
                .getBytes(StandardCharsets.ISO_8859_1), body), true);
    }

    /** {@code 200} with {@code body} sent chunked, in chunks of {@code chunkSize}; keeps the connection. */
    public static Responder chunked(byte[] body, int chunkSize) {
        return r -> {
            ByteArrayOutputStream out = new ByteArrayOutputStream(body.length + body.length / chunkSize * 8 + 128);
            out.writeBytes("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                    .getBytes(StandardCharsets.ISO_8859_1));
            for (int off = 0; off < body.length; off += chunkSize) {
                int n = Math.min(chunkSize, body.length - off);
                out.writeBytes((Integer.toHexString(n) + "\r\n").getBytes(StandardCharsets.ISO_8859_1));
                out.write(body, off, n);
                out.writeBytes("\r\n".getBytes(StandardCharsets.ISO_8859_1));
            }
            out.writeBytes("0\r\n\r\n".getBytes(StandardCharsets.ISO_8859_1));
            return new Reply(out.toByteArray(), false);
        };
    }

    /**
     * Answers with {@code then}, except that it reads the {@code n}-th request of each connection
     * and closes that connection without answering: the keep-alive race, where an origin closes
     * an idle connection just as the proxy reuses it.
     */
    public static Responder hangUpOnRequest(int n, Responder then) {
        return r -> r.numberOnConnection() == n ? Reply.hangUp() : then.reply(r);
    }

    private void acceptLoop() {
        while (!server.isClosed()) {
            Socket s;
            try {
                s = server.accept();
            } catch (IOException e) {
                return;
            }
            Connection c = new Connection(connectionCount.incrementAndGet(), s.getPort());
            open.add(s);
            connections.add(c);
            executor.execute(() -> serve(s, c));
        }
    }

    private void serve(Socket s, Connection c) {
        Parser parser = null;
        try (s) {
            parser = new Parser(new BufferedInputStream(s.getInputStream(), 65536), c);
            OutputStream out = s.getOutputStream();
            while (true) {
                Request r = parser.next();
                if (r == null) {
                    break;
                }
                c.requests.add(r);
                requests.add(r);
                if (!r.complete()) {
                    break;
                }
                Reply reply = responder.reply(r);
                if (reply.bytes().length > 0) {
                    out.write(reply.bytes());
                    out.flush();
                }
                if (reply.close()) {
                    c.hungUpByOrigin = true;
                    break;
                }
            }
        } catch (Malformed e) {
            errors.add("connection " + c.number + ": " + e.getMessage());
            parser.keepRest();
        } catch (SocketException e) {
            // The proxy closed with bytes of ours unread, or before reading all it asked for.
            c.reset = true;
        } catch (IOException | RuntimeException e) {
            if (!server.isClosed()) {
                errors.add("connection " + c.number + ": " + e);
            }
        } finally {
            open.remove(s);
            c.ended = true;
        }
    }

    /** A violation of the strict syntax; what remains on the connection becomes leftover. */
    private static class Malformed extends IOException {
        Malformed(String message) {
            super(message);
        }
    }

    /** The strict request parser for one connection. */
    private final class Parser {
        private final InputStream in;
        private final Connection c;
        /** The raw bytes of the message being parsed, kept as leftover if it turns out malformed. */
        private final ByteArrayOutputStream current = new ByteArrayOutputStream();
        private int onConnection;

        Parser(InputStream in, Connection c) {
            this.in = in;
            this.c = c;
        }

        private int read() throws IOException {
            int b = in.read();
            if (b >= 0 && current.size() < MAX_LEFTOVER) {
                current.write(b);
            }
            return b;
        }

        /** The next request; null when the peer closed between requests. */
        Request next() throws IOException {
            current.reset();
            int first = read();
            if (first < 0) {
                return null;
            }
            String requestLine = line(first, "request line");
            if (!REQUEST_LINE.matcher(requestLine).matches()) {
                throw new Malformed("bad request line: " + printable(requestLine));
            }
            List<Field> headers = fields("header");
            int number = requestCount.incrementAndGet();
            onConnection++;
            List<String> te = new ArrayList<>();
            List<String> cl = new ArrayList<>();
            for (Field f : headers) {
                if (f.is("transfer-encoding")) {
                    te.add(f.value());
                } else if (f.is("content-length")) {
                    cl.add(f.value());
                }
            }
            if (!te.isEmpty() && !cl.isEmpty()) {
                throw new Malformed("request " + number + " has both Transfer-Encoding and Content-Length");
            }
            if (te.size() > 1 || (te.size() == 1 && !te.get(0).equalsIgnoreCase("chunked"))) {
                throw new Malformed("request " + number + " has Transfer-Encoding " + te + ", not a single chunked");
            }
            if (cl.size() > 1) {
                throw new Malformed("request " + number + " has " + cl.size() + " Content-Length fields " + cl);
            }
            if (te.size() == 1) {
                return chunkedBody(number, requestLine, headers);
            }
            long length = 0;
            if (cl.size() == 1) {
                if (!cl.get(0).matches("[0-9]{1,18}")) {
                    throw new Malformed("request " + number + " has Content-Length " + printable(cl.get(0)));
                }
                length = Long.parseLong(cl.get(0));
                if (length > MAX_BODY) {
                    throw new Malformed("request " + number + " has a body of " + length + " bytes, over the test limit");
                }
            }
            byte[] body = in.readNBytes((int) length);
            return new Request(number, c.number, onConnection, requestLine, List.copyOf(headers), body, false,
                    new byte[0], List.of(), List.of(), body.length == length);
        }

        private Request chunkedBody(int number, String requestLine, List<Field> headers) throws IOException {
            ByteArrayOutputStream body = new ByteArrayOutputStream();
            int rawStart = current.size();
            List<String> extensions = new ArrayList<>();
            while (true) {
                int first = read();
                if (first < 0) {
                    return incompleteChunked(number, requestLine, headers, body, rawStart, extensions);
                }
                String sizeLine;
                try {
                    sizeLine = line(first, "chunk size line");
                } catch (Truncated e) {
                    return incompleteChunked(number, requestLine, headers, body, rawStart, extensions);
                }
                int semi = sizeLine.indexOf(';');
                String size = semi < 0 ? sizeLine : sizeLine.substring(0, semi);
                if (semi >= 0) {
                    extensions.add(sizeLine.substring(semi));
                }
                if (!size.matches("[0-9A-Fa-f]{1,8}")) {
                    throw new Malformed("request " + number + ": bad chunk size line " + printable(sizeLine));
                }
                long n = Long.parseLong(size, 16);
                if (body.size() + n > MAX_BODY) {
                    throw new Malformed("request " + number + ": chunked body over the test limit");
                }
                if (n == 0) {
                    List<Field> trailers;
                    try {
                        trailers = fields("trailer");
                    } catch (Truncated e) {
                        return incompleteChunked(number, requestLine, headers, body, rawStart, extensions);
                    }
                    byte[] raw = current.toByteArray();
                    return new Request(number, c.number, onConnection, requestLine, List.copyOf(headers),
                            body.toByteArray(), true, Arrays.copyOfRange(raw, rawStart, raw.length),
                            List.copyOf(extensions), List.copyOf(trailers), true);
                }
                for (long i = 0; i < n; i++) {
                    int b = read();
                    if (b < 0) {
                        return incompleteChunked(number, requestLine, headers, body, rawStart, extensions);
                    }
                    body.write(b);
                }
                int cr = read();
                int lf = cr < 0 ? -1 : read();
                if (cr < 0 || lf < 0) {
                    return incompleteChunked(number, requestLine, headers, body, rawStart, extensions);
                }
                if (cr != '\r' || lf != '\n') {
                    throw new Malformed("request " + number + ": chunk data not followed by CRLF");
                }
            }
        }

        private Request incompleteChunked(int number, String requestLine, List<Field> headers, ByteArrayOutputStream body,
                int rawStart, List<String> extensions) {
            byte[] raw = current.toByteArray();
            return new Request(number, c.number, onConnection, requestLine, List.copyOf(headers), body.toByteArray(), true,
                    Arrays.copyOfRange(raw, Math.min(rawStart, raw.length), raw.length), List.copyOf(extensions),
                    List.of(), false);
        }

        /** Header or trailer fields up to and including the empty line. */
        private List<Field> fields(String what) throws IOException {
            List<Field> fields = new ArrayList<>();
            while (true) {
                int first = read();
                if (first < 0) {
                    throw new Truncated("connection closed inside the " + what + " section");
                }
                if (first == ' ' || first == '\t') {
                    throw new Malformed("obsolete line folding in the " + what + " section");
                }
                String text = line(first, what + " line");
                if (text.isEmpty()) {
                    return fields;
                }
                int colon = text.indexOf(':');
                if (colon <= 0 || !TOKEN.matcher(text.substring(0, colon)).matches()) {
                    throw new Malformed("bad " + what + " line " + printable(text));
                }
                String value = text.substring(colon + 1).strip();
                for (int i = 0; i < value.length(); i++) {
                    char ch = value.charAt(i);
                    if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
                        throw new Malformed("control character in " + what + " " + printable(text));
                    }
                }
                fields.add(new Field(text.substring(0, colon), value));
            }
        }

        /** A line ending in CRLF, without it; {@code first} is its first byte, already read. */
        private String line(int first, String what) throws IOException {
            StringBuilder sb = new StringBuilder();
            int b = first;
            while (true) {
                if (b < 0) {
                    throw new Truncated("connection closed inside a " + what);
                }
                if (b == '\n') {
                    throw new Malformed("bare LF in a " + what);
                }
                if (b == '\r') {
                    int lf = read();
                    if (lf != '\n') {
                        throw lf < 0 ? new Truncated("connection closed inside a " + what)
                                : new Malformed("bare CR in a " + what);
                    }
                    return sb.toString();
                }
                if (sb.length() >= MAX_LINE) {
                    throw new Malformed(what + " longer than " + MAX_LINE + " bytes");
                }
                sb.append((char) b);
                b = read();
            }
        }

        /** After an error: everything from the start of the bad message to the end of the connection. */
        void keepRest() {
            byte[] bad = current.toByteArray();
            c.addLeftover(bad, 0, bad.length);
            byte[] buf = new byte[8192];
            try {
                int n;
                while ((n = in.read(buf)) >= 0) {
                    c.addLeftover(buf, 0, n);
                }
            } catch (IOException e) {
                // The connection ends either way.
            }
        }
    }

    /** The connection ended inside a head: a proxy that writes whole heads never does this. */
    private static final class Truncated extends Malformed {
        Truncated(String message) {
            super(message);
        }
    }

    static List<String> splitList(List<String> lines) {
        List<String> out = new ArrayList<>();
        for (String line : lines) {
            for (String item : line.split(",")) {
                String t = item.strip();
                if (!t.isEmpty()) {
                    out.add(t);
                }
            }
        }
        return out;
    }

    static String printable(String s) {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < s.length() && i < 200; i++) {
            char ch = s.charAt(i);
            sb.append(ch >= 0x20 && ch < 0x7f ? String.valueOf(ch) : String.format(Locale.ROOT, "\\x%02x", (int) ch));
        }
        return "'" + sb + (s.length() > 200 ? "...'" : "'");
    }

    static byte[] concat(byte[] a, byte[] b) {
        byte[] out = new byte[a.length + b.length];
        System.arraycopy(a, 0, out, 0, a.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }

    @Override
    public void close() throws IOException {
        server.close();
        for (Socket s : open) {
            s.close();
        }
        executor.shutdownNow();
    }
}
