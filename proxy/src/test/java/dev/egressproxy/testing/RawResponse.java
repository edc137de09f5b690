package dev.egressproxy.testing;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * One HTTP/1.x response read off a raw socket exactly as the proxy sent it: the status line, every
 * header line in order (names as sent, repeated names kept), the body by its framing (none for
 * HEAD, 1xx, 204 and 304; chunked, decoded; Content-Length; or until the proxy closes) and which
 * framing that was. Complements {@link RawClient#readHead()}, which keeps one value per name.
 */
public record RawResponse(String statusLine, int status, String reason, List<RecordingOrigin.Field> headers,
        Framing framing, byte[] body) {

    /** How the body was delimited. */
    public enum Framing { NONE, CONTENT_LENGTH, CHUNKED, CLOSE }

    /** Reads one response to a request with {@code method} from {@code in}. */
    public static RawResponse read(InputStream in, String method) throws IOException {
        String statusLine = line(in);
        if (statusLine == null) {
            throw new IOException("connection closed before a response");
        }
        String[] parts = statusLine.split(" ", 3);
        if (parts.length < 2 || !parts[0].startsWith("HTTP/")) {
            throw new IOException("not a status line: " + statusLine);
        }
        int status = Integer.parseInt(parts[1]);
        List<RecordingOrigin.Field> headers = new ArrayList<>();
        while (true) {
            String line = line(in);
            if (line == null) {
                throw new IOException("connection closed inside the response head after " + statusLine);
            }
            if (line.isEmpty()) {
                break;
            }
            int colon = line.indexOf(':');
            if (colon <= 0) {
                throw new IOException("bad response header line: " + line);
            }
            headers.add(new RecordingOrigin.Field(line.substring(0, colon), line.substring(colon + 1).strip()));
        }
        RawResponse head = new RawResponse(statusLine, status, parts.length > 2 ? parts[2] : "", List.copyOf(headers),
                Framing.NONE, new byte[0]);
        if (method.equals("HEAD") || (method.equals("CONNECT") && status / 100 == 2) || status / 100 == 1
                || status == 204 || status == 304) {
            return head;
        }
        if (head.values("transfer-encoding").stream().anyMatch(v -> v.toLowerCase(java.util.Locale.ROOT).contains("chunked"))) {
            return head.with(Framing.CHUNKED, dechunk(in));
        }
        List<String> length = head.values("content-length");
        if (!length.isEmpty()) {
            int n = Integer.parseInt(length.get(0));
            byte[] body = in.readNBytes(n);
            if (body.length != n) {
                throw new IOException("connection closed after " + body.length + " of " + n + " body bytes");
            }
            return head.with(Framing.CONTENT_LENGTH, body);
        }
        return head.with(Framing.CLOSE, in.readAllBytes());
    }

    private RawResponse with(Framing f, byte[] b) {
        return new RawResponse(statusLine, status, reason, headers, f, b);
    }

    private static byte[] dechunk(InputStream in) throws IOException {
        ByteArrayOutputStream body = new ByteArrayOutputStream();
        while (true) {
            String sizeLine = line(in);
            if (sizeLine == null) {
                throw new IOException("connection closed inside a chunked body after " + body.size() + " bytes");
            }
            int semi = sizeLine.indexOf(';');
            int n = Integer.parseInt((semi < 0 ? sizeLine : sizeLine.substring(0, semi)).strip(), 16);
            if (n == 0) {
                String trailer;
                while ((trailer = line(in)) != null && !trailer.isEmpty()) {
                    // trailer fields are not kept
                }
                return body.toByteArray();
            }
            byte[] chunk = in.readNBytes(n);
            body.write(chunk);
            if (chunk.length != n || in.read() != '\r' || in.read() != '\n') {
                throw new IOException("bad chunk in a chunked body after " + body.size() + " bytes");
            }
        }
    }

    /** A CRLF line without the CRLF; null at end of stream before any byte. */
    private static String line(InputStream in) throws IOException {
        StringBuilder sb = new StringBuilder();
        int b;
        while ((b = in.read()) >= 0) {
            if (b == '\r') {
                int lf = in.read();
                if (lf != '\n') {
                    throw new IOException("bare CR in a response line: " + sb);
                }
                return sb.toString();
            }
            if (b == '\n') {
                throw new IOException("bare LF in a response line: " + sb);
            }
            sb.append((char) b);
        }
        if (sb.length() > 0) {
            throw new IOException("connection closed inside a response line: " + sb);
        }
        return null;
    }

    /** Every value of header {@code name} (any case), one per line, in order. */
    public List<String> values(String name) {
        return headers.stream().filter(f -> f.is(name)).map(RecordingOrigin.Field::value).toList();
    }

    /** The single value of {@code name}, or null; fails when the header is repeated. */
    public String header(String name) {
        List<String> v = values(name);
        if (v.size() > 1) {
            throw new AssertionError("header " + name + " repeated: " + v);
        }
        return v.isEmpty() ? null : v.get(0);
    }

    /** The comma-separated list {@code name} carries over all its lines, trimmed. */
    public List<String> list(String name) {
        return RecordingOrigin.splitList(values(name));
    }

    public String bodyText() {
        return new String(body, StandardCharsets.ISO_8859_1);
    }
}
