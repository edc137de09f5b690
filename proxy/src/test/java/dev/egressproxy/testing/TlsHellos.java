package dev.egressproxy.testing;

import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.List;
import javax.net.ssl.SNIHostName;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLParameters;

/**
 * TLS ClientHellos for tests: real ones from the JDK's {@link SSLEngine}, and hand-built ones whose
 * every field can be broken, framed in records of any size.
 */
public final class TlsHellos {

    /** TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384. */
    public static final byte[] SUITES = {0x13, 0x01, 0x13, 0x02};
    /** The null compression method only. */
    public static final byte[] NULL_COMPRESSION = {0};

    private TlsHellos() {
    }

    /**
     * The first flight of a real JDK client: one or more TLS records carrying its ClientHello, with
     * {@code serverName} in the server_name extension ({@code null}: no extension).
     */
    public static byte[] jdk(String serverName) throws Exception {
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(null, null, null);
        SSLEngine engine = ctx.createSSLEngine();
        engine.setUseClientMode(true);
        if (serverName != null) {
            SSLParameters params = engine.getSSLParameters();
            params.setServerNames(List.of(new SNIHostName(serverName)));
            engine.setSSLParameters(params);
        }
        ByteBuffer out = ByteBuffer.allocate(engine.getSession().getPacketBufferSize());
        engine.wrap(ByteBuffer.allocate(0), out);
        out.flip();
        byte[] bytes = new byte[out.remaining()];
        out.get(bytes);
        return bytes;
    }

    /** An extension: type, 2-byte length, data. */
    public static byte[] extension(int type, byte[] data) {
        return concat(u16(type), u16(data.length), data);
    }

    /** A server_name extension with one host_name entry per name, as given (no validation). */
    public static byte[] serverName(String... names) {
        byte[][] entries = new byte[names.length][];
        for (int i = 0; i < names.length; i++) {
            entries[i] = serverNameEntry(0, names[i].getBytes(StandardCharsets.ISO_8859_1));
        }
        return serverNameList(entries);
    }

    /** One entry of a server_name list: type, 2-byte length, name bytes. */
    public static byte[] serverNameEntry(int type, byte[] name) {
        return concat(new byte[] {(byte) type}, u16(name.length), name);
    }

    /** A server_name extension holding {@code entries}, the list length filled in. */
    public static byte[] serverNameList(byte[]... entries) {
        byte[] list = concat(entries);
        return extension(0, concat(u16(list.length), list));
    }

    /** An encrypted_client_hello extension (outer, with made-up content). */
    public static byte[] ech() {
        return extension(0xfe0d, new byte[] {0, 0, 1, 0, 1, 7, 0, 0x20, 1, 2});
    }

    /** A supported_versions extension offering TLS 1.3 and 1.2, as clients send. */
    public static byte[] supportedVersions() {
        return extension(43, new byte[] {4, 3, 4, 3, 3});
    }

    /**
     * A ClientHello body (what follows the handshake header): legacy_version 0x0303, 32 bytes of
     * random, a session id of {@code sessionIdLength} bytes, {@code suites},
     * {@code compression}, then the extension block of {@code extensions} ({@code null}: no
     * block at all).
     */
    public static byte[] body(int sessionIdLength, byte[] suites, byte[] compression, byte[]... extensions) {
        return bodyWithVersion(0x0303, sessionIdLength, suites, compression, extensions);
    }

    public static byte[] bodyWithVersion(int version, int sessionIdLength, byte[] suites, byte[] compression,
            byte[]... extensions) {
        byte[] fixed = concat(u16(version), new byte[32], new byte[] {(byte) sessionIdLength}, new byte[sessionIdLength],
                u16(suites.length), suites, new byte[] {(byte) compression.length}, compression);
        if (extensions == null) {
            return fixed;
        }
        byte[] block = concat(extensions);
        return concat(fixed, u16(block.length), block);
    }

    /** A typical body with these extensions (supported_versions first). */
    public static byte[] body(byte[]... extensions) {
        byte[][] all = new byte[extensions.length + 1][];
        all[0] = supportedVersions();
        System.arraycopy(extensions, 0, all, 1, extensions.length);
        return body(32, SUITES, NULL_COMPRESSION, all);
    }

    /** A handshake message: type, 3-byte length, body. */
    public static byte[] message(int type, byte[] body) {
        return concat(new byte[] {(byte) type, (byte) (body.length >> 16), (byte) (body.length >> 8), (byte) body.length},
                body);
    }

    /** A ClientHello message (type 1) around {@code body}. */
    public static byte[] clientHello(byte[] body) {
        return message(1, body);
    }

    /** {@code payload} in handshake records of at most {@code fragment} bytes each (version 0x0301). */
    public static byte[] records(byte[] payload, int fragment) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        for (int off = 0; off < payload.length; off += fragment) {
            int n = Math.min(fragment, payload.length - off);
            out.writeBytes(record(22, Arrays.copyOfRange(payload, off, off + n)));
        }
        return out.toByteArray();
    }

    /** One record of {@code contentType} around {@code payload}, its length field filled in. */
    public static byte[] record(int contentType, byte[] payload) {
        return concat(new byte[] {(byte) contentType, 3, 1}, u16(payload.length), payload);
    }

    /** A complete first flight: the ClientHello of {@code body} in one record. */
    public static byte[] flight(byte[] body) {
        return records(clientHello(body), 16384);
    }

    /** The payload of the records in {@code flight} joined (the handshake bytes), for re-framing. */
    public static byte[] unframe(byte[] flight) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        int off = 0;
        while (off + 5 <= flight.length) {
            int len = (flight[off + 3] & 0xff) << 8 | flight[off + 4] & 0xff;
            out.write(flight, off + 5, len);
            off += 5 + len;
        }
        return out.toByteArray();
    }

    public static byte[] u16(int v) {
        return new byte[] {(byte) (v >> 8), (byte) v};
    }

    public static byte[] concat(byte[]... parts) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        for (byte[] p : parts) {
            out.writeBytes(p);
        }
        return out.toByteArray();
    }
}
