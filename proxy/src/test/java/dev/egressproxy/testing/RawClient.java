package dev.egressproxy.testing;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;

/**
 * A plain socket speaking to the proxy byte by byte, for what HTTP client libraries will not send
 * (malformed heads, payload in the same write as a CONNECT) and to read answers exactly as sent.
 */
public final class RawClient implements AutoCloseable {

    /** A response head as received. */
    public record Head(String statusLine, int status, String reason, Map<String, String> headers) {
        public String header(String name) {
            return headers.get(name.toLowerCase(Locale.ROOT));
        }
    }

    public final Socket socket;
    private final InputStream in;
    private final OutputStream out;

    public RawClient(InetSocketAddress proxy) throws IOException {
        this(proxy, null);
    }

    /** A client whose socket is bound to {@code from} (such as 127.0.0.2), or to any address when null. */
    public RawClient(InetSocketAddress proxy, InetAddress from) throws IOException {
        socket = new Socket();
        if (from != null) {
            socket.bind(new InetSocketAddress(from, 0));
        }
        socket.connect(proxy, 5000);
        socket.setSoTimeout(20_000);
        in = socket.getInputStream();
        out = socket.getOutputStream();
    }

    /**
     * A client over a socket already connected to the proxy, such as an {@code SSLSocket} to the
     * TLS listener (whose handshake runs on the first read or write).
     */
    public RawClient(Socket connected) throws IOException {
        socket = connected;
        socket.setSoTimeout(20_000);
        in = socket.getInputStream();
        out = socket.getOutputStream();
    }

    public RawClient send(String text) throws IOException {
        return send(text.getBytes(StandardCharsets.ISO_8859_1));
    }

    public RawClient send(byte[] bytes) throws IOException {
        out.write(bytes);
        out.flush();
        return this;
    }

    /** Reads a response head up to the blank line. */
    public Head readHead() throws IOException {
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        int matched = 0;
        while (matched < 4) {
            int b = in.read();
            if (b < 0) {
                throw new IOException("connection closed after " + buf.size() + " bytes of head: " + buf);
            }
            buf.write(b);
            matched = (b == (matched % 2 == 0 ? '\r' : '\n')) ? matched + 1 : (b == '\r' ? 1 : 0);
        }
        String[] lines = buf.toString(StandardCharsets.ISO_8859_1).split("\r\n");
        String statusLine = lines[0];
        String[] parts = statusLine.split(" ", 3);
        Map<String, String> headers = new LinkedHashMap<>();
        for (int i = 1; i < lines.length; i++) {
            int colon = lines[i].indexOf(':');
            if (colon > 0) {
                headers.put(lines[i].substring(0, colon).trim().toLowerCase(Locale.ROOT), lines[i].substring(colon + 1).trim());
            }
        }
        return new Head(statusLine, Integer.parseInt(parts[1]), parts.length > 2 ? parts[2] : "", headers);
    }

    public byte[] readExactly(int n) throws IOException {
        return in.readNBytes(n);
    }

    /** Reads until the proxy closes or half-closes the connection. */
    public byte[] readToEnd() throws IOException {
        return in.readAllBytes();
    }

    public InputStream in() {
        return in;
    }

    public OutputStream out() {
        return out;
    }

    @Override
    public void close() throws IOException {
        socket.close();
    }
}
