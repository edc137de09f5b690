package dev.egressproxy.tls;

import java.nio.ByteBuffer;
import java.util.BitSet;
import java.util.Locale;

/**
 * A strict, incremental parser of the TLS ClientHello a client sends first in a tunnel, for the SNI
 * check. Pure Java: no I/O, no Netty; bytes are fed as they arrive, in any split, and the result is
 * the server name (or none) with whether Encrypted Client Hello is offered, or why the bytes are
 * not an acceptable ClientHello.
 *
 * <p>What it accepts (RFC 8446 sections 4.1.2 and 5.1, RFC 6066 section 3):
 * <ul>
 *   <li>TLS records of content type 22 (handshake), version {@code 0x03xx}, length 1..2^14. The
 *       ClientHello may be fragmented over any number of records and reads; the last of its
 *       records must end where the ClientHello ends. At most {@value #MAX_RECORD_BYTES} bytes of
 *       records (headers included) are read before the ClientHello must be complete.</li>
 *   <li>One handshake message of type 1 (client_hello), at most {@value #MAX_HELLO_LENGTH} bytes,
 *       whose fields fill it exactly: legacy_version {@code 0x03xx}, 32 bytes of random, a
 *       session id of at most 32 bytes, a non-empty even-length list of cipher suites, a
 *       non-empty list of compression methods containing null (0), then either nothing or an
 *       extension block whose length is exactly what is left.</li>
 *   <li>Every extension's length within the block; no extension type twice.</li>
 *   <li>server_name (type 0): a list that fills the extension and holds exactly one entry, of
 *       type host_name (0), 1..254 bytes, a DNS name of ASCII letter-digit-hyphen labels (1..63
 *       bytes, no hyphen at either end, 253 bytes at most without the one trailing dot allowed)
 *       whose last label is not all digits (so no IPv4 literal; IPv6 literals fail on the colon).
 *       The name is returned lower-cased, without a trailing dot.</li>
 *   <li>encrypted_client_hello (type {@code 0xfe0d}) is noted, not parsed.</li>
 * </ul>
 *
 * <p>The first byte that is not a handshake record header (content type 22, major version 3) makes
 * the result {@link SniReason#NOT_TLS}; anything else that breaks the rules above makes it
 * {@link SniReason#MALFORMED_CLIENT_HELLO}, with a detail for the debug log that never contains
 * the client's bytes. Once a result other than {@link #NEED_MORE} is returned, further bytes are
 * ignored and the same result is returned.
 *
 * <p>Not thread-safe; one instance per tunnel, fed from its event loop.
 */
public final class ClientHelloParser {

    /** Largest TLSPlaintext fragment (2^14). */
    public static final int MAX_RECORD_LENGTH = 16384;
    /** Largest ClientHello message body the parser accepts (real ones are well under 4 KiB). */
    public static final int MAX_HELLO_LENGTH = 16384;
    /** Record bytes, headers included, after which the ClientHello must be complete. */
    public static final int MAX_RECORD_BYTES = 65536;

    static final int CONTENT_TYPE_HANDSHAKE = 22;
    static final int HANDSHAKE_CLIENT_HELLO = 1;
    static final int EXTENSION_SERVER_NAME = 0;
    static final int EXTENSION_ENCRYPTED_CLIENT_HELLO = 0xfe0d;
    static final int NAME_TYPE_HOST_NAME = 0;

    /** What the bytes fed so far amount to. */
    public sealed interface Result permits NeedMore, Hello, Refused {
    }

    /** The ClientHello is not complete yet: feed more bytes. */
    public record NeedMore() implements Result {
    }

    /**
     * A complete, well-formed ClientHello.
     *
     * @param serverName the host_name of the server_name extension, lower case, no trailing dot;
     *     {@code null} when the extension is absent
     * @param ech whether the encrypted_client_hello extension is present
     */
    public record Hello(String serverName, boolean ech) implements Result {
    }

    /**
     * The bytes are not an acceptable ClientHello.
     *
     * @param reason {@link SniReason#NOT_TLS} or {@link SniReason#MALFORMED_CLIENT_HELLO}
     * @param detail what was wrong, for the debug log (never the client's bytes)
     */
    public record Refused(SniReason reason, String detail) implements Result {
    }

    /** The one {@link NeedMore} value. */
    public static final Result NEED_MORE = new NeedMore();

    private final byte[] header = new byte[5];
    private int headerFilled;
    /** Payload bytes of the current record still to come. */
    private int recordLeft;
    private boolean firstRecord = true;
    private long recordBytes;
    private final byte[] messageHeader = new byte[4];
    private int messageHeaderFilled;
    private byte[] body;
    private int bodyFilled;
    private Result result = NEED_MORE;

    /** Feeds the remaining bytes of {@code in} (its position moves to what was consumed). */
    public Result feed(ByteBuffer in) {
        while (result instanceof NeedMore && in.hasRemaining()) {
            if (recordLeft == 0) {
                readHeaderByte(in.get());
            } else {
                readPayload(in);
            }
        }
        return result;
    }

    /** Feeds {@code len} bytes of {@code bytes} from {@code offset}. */
    public Result feed(byte[] bytes, int offset, int len) {
        return feed(ByteBuffer.wrap(bytes, offset, len));
    }

    /** Feeds all of {@code bytes}. */
    public Result feed(byte[] bytes) {
        return feed(bytes, 0, bytes.length);
    }

    /** The result so far, without feeding anything. */
    public Result result() {
        return result;
    }

    /**
     * The result when the client sends nothing more (end of input or a closed connection): a
     * hello still incomplete is truncated.
     */
    public Result end() {
        if (result instanceof NeedMore) {
            result = recordBytes == 0 ? result : malformed("the client's input ended inside the ClientHello");
        }
        return result;
    }

    /** Whether any byte was fed. */
    public boolean started() {
        return recordBytes > 0;
    }

    private void readHeaderByte(byte b) {
        header[headerFilled++] = b;
        recordBytes++;
        if (headerFilled == 1 && (b & 0xff) != CONTENT_TYPE_HANDSHAKE) {
            result = firstRecord
                    ? new Refused(SniReason.NOT_TLS, "first byte " + hex2(b & 0xff) + " is not a TLS handshake record")
                    : malformed("a record of content type " + (b & 0xff) + " before the ClientHello was complete");
        } else if (headerFilled == 2 && b != 3) {
            result = firstRecord
                    ? new Refused(SniReason.NOT_TLS, "record version major " + (b & 0xff) + " is not TLS (3)")
                    : malformed("record version major " + (b & 0xff) + " inside the ClientHello");
        } else if (headerFilled == 5) {
            int len = (header[3] & 0xff) << 8 | header[4] & 0xff;
            headerFilled = 0;
            firstRecord = false;
            if (len == 0) {
                result = malformed("empty handshake record");
            } else if (len > MAX_RECORD_LENGTH) {
                result = malformed("record length " + len + " above 2^14");
            } else if (recordBytes + len > MAX_RECORD_BYTES) {
                result = malformed("no complete ClientHello within " + MAX_RECORD_BYTES + " bytes of records");
            } else {
                recordLeft = len;
            }
        }
    }

    private void readPayload(ByteBuffer in) {
        if (messageHeaderFilled < 4) {
            messageHeader[messageHeaderFilled++] = in.get();
            recordLeft--;
            recordBytes++;
            if (messageHeaderFilled == 4) {
                startBody();
            }
            return;
        }
        int n = Math.min(Math.min(in.remaining(), recordLeft), body.length - bodyFilled);
        in.get(body, bodyFilled, n);
        bodyFilled += n;
        recordLeft -= n;
        recordBytes += n;
        if (bodyFilled == body.length) {
            finish();
        }
    }

    private void startBody() {
        int type = messageHeader[0] & 0xff;
        int len = (messageHeader[1] & 0xff) << 16 | (messageHeader[2] & 0xff) << 8 | messageHeader[3] & 0xff;
        if (type != HANDSHAKE_CLIENT_HELLO) {
            result = malformed("handshake message type " + type + ", not ClientHello (1)");
        } else if (len > MAX_HELLO_LENGTH) {
            result = malformed("ClientHello of " + len + " bytes, above " + MAX_HELLO_LENGTH);
        } else if (len == 0) {
            result = malformed("empty ClientHello");
        } else {
            body = new byte[len];
        }
    }

    private void finish() {
        if (recordLeft != 0) {
            result = malformed("its last record goes on " + recordLeft + " bytes past the ClientHello");
            return;
        }
        result = parseBody(body);
        body = null;
    }

    /** Parses a complete ClientHello message body (after the 4-byte handshake header). */
    static Result parseBody(byte[] body) {
        Reader r = new Reader(body);
        try {
            int version = r.u16();
            if (version >> 8 != 3) {
                return malformed("legacy_version " + hex4(version));
            }
            r.skip(32, "random");
            int sessionId = r.u8();
            if (sessionId > 32) {
                return malformed("session id of " + sessionId + " bytes, above 32");
            }
            r.skip(sessionId, "session id");
            int suites = r.u16();
            if (suites == 0 || suites % 2 != 0) {
                return malformed("cipher suites length " + suites + " (must be even and not 0)");
            }
            r.skip(suites, "cipher suites");
            int methods = r.u8();
            if (methods == 0) {
                return malformed("no compression method");
            }
            boolean nullMethod = false;
            for (int i = 0; i < methods; i++) {
                nullMethod |= r.u8() == 0;
            }
            if (!nullMethod) {
                return malformed("compression methods without null (0)");
            }
            if (r.remaining() == 0) {
                // No extension block at all: a pre-TLS-1.2-style hello, hence no server name.
                return new Hello(null, false);
            }
            int block = r.u16();
            if (block != r.remaining()) {
                return malformed("extensions length " + block + " but " + r.remaining() + " bytes left");
            }
            String serverName = null;
            boolean ech = false;
            BitSet seen = new BitSet();
            while (r.remaining() > 0) {
                int type = r.u16();
                int len = r.u16();
                if (len > r.remaining()) {
                    return malformed("extension " + type + " of " + len + " bytes overruns the block ("
                            + r.remaining() + " left)");
                }
                if (seen.get(type)) {
                    return malformed("extension " + type + " twice");
                }
                seen.set(type);
                if (type == EXTENSION_SERVER_NAME) {
                    Result name = serverName(body, r.position(), len);
                    if (name instanceof Refused) {
                        return name;
                    }
                    serverName = ((Hello) name).serverName();
                } else if (type == EXTENSION_ENCRYPTED_CLIENT_HELLO) {
                    ech = true;
                }
                r.skip(len, "extension");
            }
            return new Hello(serverName, ech);
        } catch (Truncated e) {
            return malformed("ClientHello ends inside its " + e.field);
        }
    }

    /** The host name of the server_name extension at {@code off} as a {@link Hello}, or a {@link Refused}. */
    private static Result serverName(byte[] b, int off, int len) {
        Reader r = new Reader(b, off, off + len);
        try {
            int list = r.u16();
            if (list != r.remaining()) {
                return malformed("server_name list length " + list + " but " + r.remaining() + " bytes left");
            }
            if (list == 0) {
                return malformed("empty server_name list");
            }
            int nameType = r.u8();
            if (nameType != NAME_TYPE_HOST_NAME) {
                return malformed("server_name entry of type " + nameType + ", not host_name (0)");
            }
            int nameLen = r.u16();
            if (nameLen > r.remaining()) {
                return malformed("host_name of " + nameLen + " bytes overruns the list");
            }
            int start = r.position();
            r.skip(nameLen, "host_name");
            if (r.remaining() != 0) {
                return malformed("more than one entry in the server_name list");
            }
            String name = hostName(b, start, nameLen);
            return name != null ? new Hello(name, false) : malformed("host_name is not a valid DNS name");
        } catch (Truncated e) {
            return malformed("server_name extension ends inside its " + e.field);
        }
    }

    /**
     * {@code len} bytes at {@code off} as a lower-case DNS name without its trailing dot, or
     * {@code null} when they are not one (see the class comment).
     */
    static String hostName(byte[] b, int off, int len) {
        int end = off + len;
        if (len > 1 && b[end - 1] == '.') {
            end--;
        }
        int total = end - off;
        if (total < 1 || total > 253) {
            return null;
        }
        char[] out = new char[total];
        int labelStart = off;
        boolean lastLabelDigitsOnly = true;
        for (int i = off; i <= end; i++) {
            if (i == end || b[i] == '.') {
                int labelLen = i - labelStart;
                if (labelLen < 1 || labelLen > 63 || b[labelStart] == '-' || b[i - 1] == '-') {
                    return null;
                }
                if (i == end) {
                    break;
                }
                out[i - off] = '.';
                labelStart = i + 1;
                lastLabelDigitsOnly = true;
                continue;
            }
            int c = b[i] & 0xff;
            if (c >= 'A' && c <= 'Z') {
                c += 'a' - 'A';
            } else if (!(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-')) {
                return null;
            }
            if (c < '0' || c > '9') {
                lastLabelDigitsOnly = false;
            }
            out[i - off] = (char) c;
        }
        return lastLabelDigitsOnly ? null : new String(out);
    }

    private static Refused malformed(String detail) {
        return new Refused(SniReason.MALFORMED_CLIENT_HELLO, detail);
    }

    private static String hex2(int v) {
        return String.format(Locale.ROOT, "0x%02x", v);
    }

    private static String hex4(int v) {
        return String.format(Locale.ROOT, "0x%04x", v);
    }

    /** A field ran past the end of what holds it. */
    private static final class Truncated extends Exception {
        final String field;

        Truncated(String field) {
            super(field, null, false, false);
            this.field = field;
        }
    }

    /** Big-endian reads within {@code [pos, limit)} that fail with {@link Truncated}, never past it. */
    private static final class Reader {
        private final byte[] b;
        private int pos;
        private final int limit;

        Reader(byte[] b) {
            this(b, 0, b.length);
        }

        Reader(byte[] b, int pos, int limit) {
            this.b = b;
            this.pos = pos;
            this.limit = limit;
        }

        int u8() throws Truncated {
            need(1, "fields");
            return b[pos++] & 0xff;
        }

        int u16() throws Truncated {
            need(2, "fields");
            int v = (b[pos] & 0xff) << 8 | b[pos + 1] & 0xff;
            pos += 2;
            return v;
        }

        void skip(int n, String field) throws Truncated {
            need(n, field);
            pos += n;
        }

        int remaining() {
            return limit - pos;
        }

        int position() {
            return pos;
        }

        private void need(int n, String field) throws Truncated {
            if (n > limit - pos) {
                throw new Truncated(field);
            }
        }
    }
}
