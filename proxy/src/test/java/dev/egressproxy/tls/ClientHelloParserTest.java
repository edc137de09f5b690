package dev.egressproxy.tls;

import static dev.egressproxy.testing.TlsHellos.NULL_COMPRESSION;
import static dev.egressproxy.testing.TlsHellos.SUITES;
import static dev.egressproxy.testing.TlsHellos.body;
import static dev.egressproxy.testing.TlsHellos.bodyWithVersion;
import static dev.egressproxy.testing.TlsHellos.clientHello;
import static dev.egressproxy.testing.TlsHellos.concat;
import static dev.egressproxy.testing.TlsHellos.ech;
import static dev.egressproxy.testing.TlsHellos.extension;
import static dev.egressproxy.testing.TlsHellos.flight;
import static dev.egressproxy.testing.TlsHellos.message;
import static dev.egressproxy.testing.TlsHellos.record;
import static dev.egressproxy.testing.TlsHellos.records;
import static dev.egressproxy.testing.TlsHellos.serverName;
import static dev.egressproxy.testing.TlsHellos.serverNameEntry;
import static dev.egressproxy.testing.TlsHellos.serverNameList;
import static dev.egressproxy.testing.TlsHellos.supportedVersions;
import static dev.egressproxy.testing.TlsHellos.u16;
import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.params.provider.Arguments.argumentSet;

import dev.egressproxy.testing.TlsHellos;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Table-driven tests of {@link ClientHelloParser}: real ClientHellos from the JDK, the same
 * re-framed in tiny records, and hand-built hostile variants. Every case is fed whole, one byte at
 * a time, and in random chunks, and must give the same result each way.
 */
class ClientHelloParserTest {

    private static final String MALFORMED = "refused malformed_client_hello";
    private static final String NOT_TLS = "refused not_tls";
    private static final String NEED_MORE = "need more";

    static Stream<Arguments> cases() throws Exception {
        byte[] jdk = TlsHellos.jdk("registry.redhat.io");
        byte[] jdkHandshake = TlsHellos.unframe(jdk);
        byte[] typical = clientHello(body(serverName("cdn.quay.io")));
        String longLabel = "a".repeat(63);
        String name253 = String.join(".", longLabel, longLabel, longLabel, "a".repeat(61));
        return Stream.of(
                // Real clients.
                argumentSet("JDK SSLEngine hello with SNI", jdk, "hello registry.redhat.io"),
                argumentSet("JDK SSLEngine hello without SNI", TlsHellos.jdk(null), "hello -"),
                argumentSet("JDK hello re-framed in 1-byte records", records(jdkHandshake, 1), "hello registry.redhat.io"),
                argumentSet("JDK hello re-framed in 100-byte records", records(jdkHandshake, 100), "hello registry.redhat.io"),
                argumentSet("JDK hello followed by a ChangeCipherSpec and application data", concat(jdk,
                        record(20, new byte[] {1}), record(23, new byte[40])), "hello registry.redhat.io"),
                argumentSet("JDK hello cut one byte short", Arrays.copyOf(jdk, jdk.length - 1), NEED_MORE),
                argumentSet("JDK hello cut inside the record header", Arrays.copyOf(jdk, 3), NEED_MORE),

                // Server names.
                argumentSet("upper case and a trailing dot are normalised",
                        flight(body(serverName("CDN.Quay.IO."))), "hello cdn.quay.io"),
                argumentSet("punycode label", flight(body(serverName("xn--bcher-kva.example"))), "hello xn--bcher-kva.example"),
                argumentSet("single-label name", flight(body(serverName("mirror"))), "hello mirror"),
                argumentSet("name of 253 bytes", flight(body(serverName(name253))), "hello " + name253),
                argumentSet("name of 254 bytes", flight(body(serverName(name253 + "a"))), MALFORMED),
                argumentSet("label of 64 bytes", flight(body(serverName("a".repeat(64) + ".example"))), MALFORMED),
                argumentSet("IPv4 literal as SNI", flight(body(serverName("127.0.0.1"))), MALFORMED),
                argumentSet("all-digit last label", flight(body(serverName("host.123"))), MALFORMED),
                argumentSet("IPv6 literal as SNI", flight(body(serverName("::1"))), MALFORMED),
                argumentSet("NUL inside the name", flight(body(serverName("cdn.quay.io\0.evil.example"))), MALFORMED),
                argumentSet("NUL at the end of the name", flight(body(serverName("cdn.quay.io\0"))), MALFORMED),
                argumentSet("underscore", flight(body(serverName("my_host.example"))), MALFORMED),
                argumentSet("space", flight(body(serverName("cdn.quay.io evil"))), MALFORMED),
                argumentSet("non-ASCII bytes", flight(body(serverNameList(serverNameEntry(0,
                        "rеgistry.redhat.io".getBytes(StandardCharsets.UTF_8))))), MALFORMED),
                argumentSet("empty label", flight(body(serverName("cdn..quay.io"))), MALFORMED),
                argumentSet("leading hyphen", flight(body(serverName("-cdn.quay.io"))), MALFORMED),
                argumentSet("trailing hyphen in a label", flight(body(serverName("cdn-.quay.io"))), MALFORMED),
                argumentSet("two trailing dots", flight(body(serverName("cdn.quay.io.."))), MALFORMED),
                argumentSet("just a dot", flight(body(serverName("."))), MALFORMED),
                argumentSet("empty name", flight(body(serverName(""))), MALFORMED),
                argumentSet("two names in one list", flight(body(serverName("cdn.quay.io", "evil.example"))), MALFORMED),
                argumentSet("two server_name extensions", flight(body(serverName("cdn.quay.io"), serverName("evil.example"))),
                        MALFORMED),
                argumentSet("name type other than host_name", flight(body(serverNameList(serverNameEntry(1,
                        "cdn.quay.io".getBytes(StandardCharsets.US_ASCII))))), MALFORMED),
                argumentSet("empty server_name extension", flight(body(extension(0, new byte[0]))), MALFORMED),
                argumentSet("empty server_name list", flight(body(extension(0, u16(0)))), MALFORMED),
                argumentSet("server_name list longer than its extension", flight(body(extension(0,
                        concat(u16(40), serverNameEntry(0, "cdn.quay.io".getBytes(StandardCharsets.US_ASCII)))))),
                        MALFORMED),
                argumentSet("host_name longer than its list", flight(body(extension(0, concat(u16(6),
                        new byte[] {0, 0, 40}, "cdn".getBytes(StandardCharsets.US_ASCII))))), MALFORMED),
                argumentSet("no server_name extension", flight(body()), "hello -"),

                // ECH.
                argumentSet("ECH with the target as outer name", flight(body(serverName("cdn.quay.io"), ech())),
                        "hello cdn.quay.io ech"),
                argumentSet("ECH with another outer name", flight(body(serverName("public.cdn.example"), ech())),
                        "hello public.cdn.example ech"),
                argumentSet("ECH twice", flight(body(serverName("cdn.quay.io"), ech(), ech())), MALFORMED),

                // ClientHello fields.
                argumentSet("no extension block at all", flight(TlsHellos.body(0, SUITES, NULL_COMPRESSION, (byte[][]) null)),
                        "hello -"),
                argumentSet("empty extension block", flight(TlsHellos.body(0, SUITES, NULL_COMPRESSION)), "hello -"),
                argumentSet("legacy_version 2.0", flight(bodyWithVersion(0x0200, 0, SUITES, NULL_COMPRESSION)), MALFORMED),
                argumentSet("session id of 33 bytes", flight(TlsHellos.body(33, SUITES, NULL_COMPRESSION,
                        serverName("cdn.quay.io"))), MALFORMED),
                argumentSet("odd cipher suites length", flight(TlsHellos.body(0, new byte[] {0x13, 0x01, 0x13},
                        NULL_COMPRESSION, serverName("cdn.quay.io"))), MALFORMED),
                argumentSet("no cipher suite", flight(TlsHellos.body(0, new byte[0], NULL_COMPRESSION,
                        serverName("cdn.quay.io"))), MALFORMED),
                argumentSet("no compression method", flight(TlsHellos.body(0, SUITES, new byte[0],
                        serverName("cdn.quay.io"))), MALFORMED),
                argumentSet("compression without null", flight(TlsHellos.body(0, SUITES, new byte[] {1},
                        serverName("cdn.quay.io"))), MALFORMED),
                argumentSet("extension block longer than what is left", flight(concat(
                        TlsHellos.body(0, SUITES, NULL_COMPRESSION, (byte[][]) null), u16(100), serverName("cdn.quay.io"))),
                        MALFORMED),
                argumentSet("bytes after the extension block", flight(concat(body(serverName("cdn.quay.io")),
                        new byte[] {0, 0})), MALFORMED),
                argumentSet("extension longer than the block", flight(concat(
                        TlsHellos.body(0, SUITES, NULL_COMPRESSION, (byte[][]) null), u16(8), u16(43), u16(200),
                        new byte[4])), MALFORMED),
                argumentSet("extension type twice (not server_name)", flight(body(supportedVersions(),
                        serverName("cdn.quay.io"))), MALFORMED),
                argumentSet("random cut short", flight(concat(u16(0x0303), new byte[10])), MALFORMED),
                argumentSet("ClientHello message length longer than its fields", records(concat(new byte[] {1, 0, 1, 0},
                        body(serverName("cdn.quay.io")), new byte[256 - body(serverName("cdn.quay.io")).length]), 16384),
                        MALFORMED),

                // Handshake and record layer.
                argumentSet("ServerHello instead of ClientHello", records(message(2, body(serverName("cdn.quay.io"))), 16384),
                        MALFORMED),
                argumentSet("ClientHello above 16 KiB", records(clientHello(body(serverName("cdn.quay.io"),
                        extension(21, new byte[16384]))), 16384), MALFORMED),
                argumentSet("ClientHello of 16 KiB in 1-byte records (more than 64 KiB of records)",
                        records(clientHello(body(serverName("cdn.quay.io"), extension(21, new byte[12000]))), 1), MALFORMED),
                argumentSet("empty ClientHello", records(clientHello(new byte[0]), 16384), MALFORMED),
                argumentSet("record longer than 2^14", concat(new byte[] {22, 3, 1, 0x40, 1}, new byte[16385]), MALFORMED),
                argumentSet("empty handshake record", concat(record(22, new byte[0]), typical), MALFORMED),
                argumentSet("record goes on past the ClientHello", record(22, concat(typical, new byte[] {1, 0})), MALFORMED),
                argumentSet("alert record in the middle of the ClientHello", concat(record(22, Arrays.copyOf(typical, 10)),
                        record(21, new byte[] {2, 40}), record(22, Arrays.copyOfRange(typical, 10, typical.length))),
                        MALFORMED),
                argumentSet("second record of another major version", concat(record(22, Arrays.copyOf(typical, 10)),
                        new byte[] {22, 2, 0}, u16(typical.length - 10), Arrays.copyOfRange(typical, 10, typical.length)),
                        MALFORMED),

                // Not TLS at all.
                argumentSet("HTTP request", "GET / HTTP/1.1\r\nHost: cdn.quay.io\r\n\r\n".getBytes(StandardCharsets.US_ASCII),
                        NOT_TLS),
                argumentSet("SSH banner", "SSH-2.0-OpenSSH_9.2\r\n".getBytes(StandardCharsets.US_ASCII), NOT_TLS),
                argumentSet("SSLv2-compatible ClientHello", new byte[] {(byte) 0x80, 0x2e, 1, 3, 1, 0, 0x15, 0, 0, 0, 0x10},
                        NOT_TLS),
                argumentSet("handshake type byte with version major 2", new byte[] {22, 2, 0, 0, 5, 1, 0, 0, 1, 0}, NOT_TLS),
                argumentSet("application data record first", record(23, new byte[20]), NOT_TLS));
    }

    @ParameterizedTest(name = "{argumentSetName}")
    @MethodSource("cases")
    void parsesTheSameWhateverTheSplit(byte[] input, String expected) {
        assertThat(describe(new ClientHelloParser().feed(input))).as("whole").isEqualTo(expected);

        ClientHelloParser bytewise = new ClientHelloParser();
        ClientHelloParser.Result last = ClientHelloParser.NEED_MORE;
        for (byte b : input) {
            last = bytewise.feed(new byte[] {b});
        }
        assertThat(describe(last)).as("one byte at a time").isEqualTo(expected);

        Random random = new Random(input.length);
        ClientHelloParser chunked = new ClientHelloParser();
        ByteBuffer in = ByteBuffer.wrap(input);
        last = chunked.result();
        while (in.hasRemaining()) {
            int n = Math.min(in.remaining(), 1 + random.nextInt(97));
            ByteBuffer chunk = in.slice();
            chunk.limit(n);
            last = chunked.feed(chunk);
            in.position(in.position() + n);
        }
        assertThat(describe(last)).as("random chunks").isEqualTo(expected);
    }

    @Test
    void aResultStaysOnceReachedAndFurtherBytesAreNotConsumed() throws Exception {
        byte[] jdk = TlsHellos.jdk("registry.redhat.io");
        ClientHelloParser parser = new ClientHelloParser();
        ByteBuffer in = ByteBuffer.wrap(concat(jdk, "early data".getBytes(StandardCharsets.US_ASCII)));

        ClientHelloParser.Result first = parser.feed(in);

        assertThat(first).isEqualTo(new ClientHelloParser.Hello("registry.redhat.io", false));
        assertThat(in.position()).as("consumed exactly the ClientHello's records").isEqualTo(jdk.length);
        assertThat(parser.feed("GET /".getBytes(StandardCharsets.US_ASCII))).isSameAs(first);
        assertThat(parser.end()).isSameAs(first);
    }

    @Test
    void endOfInputInsideAClientHelloIsMalformedAndBeforeAnyByteIsNothing() throws Exception {
        byte[] jdk = TlsHellos.jdk("registry.redhat.io");
        ClientHelloParser cut = new ClientHelloParser();
        cut.feed(Arrays.copyOf(jdk, 40));
        assertThat(describe(cut.end())).isEqualTo(MALFORMED);

        ClientHelloParser silent = new ClientHelloParser();
        assertThat(silent.started()).isFalse();
        assertThat(silent.end()).isInstanceOf(ClientHelloParser.NeedMore.class);
    }

    @Test
    void refusalDetailsNameTheProblemWithoutTheClientsBytes() {
        ClientHelloParser.Result r = new ClientHelloParser().feed(flight(body(serverName("evil\u0001name.example"))));
        assertThat(r).isInstanceOf(ClientHelloParser.Refused.class);
        assertThat(((ClientHelloParser.Refused) r).detail()).isEqualTo("host_name is not a valid DNS name")
                .doesNotContain("evil");
    }

    private static String describe(ClientHelloParser.Result r) {
        if (r instanceof ClientHelloParser.Hello h) {
            return "hello " + (h.serverName() == null ? "-" : h.serverName()) + (h.ech() ? " ech" : "");
        }
        if (r instanceof ClientHelloParser.Refused f) {
            return "refused " + f.reason().label();
        }
        return NEED_MORE;
    }
}
