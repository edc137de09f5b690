package dev.egressproxy.fuzz;

import static org.assertj.core.api.Assertions.assertThat;

import com.code_intelligence.jazzer.api.BugDetectors;
import com.code_intelligence.jazzer.api.SilentCloseable;
import com.code_intelligence.jazzer.junit.FuzzTest;
import dev.egressproxy.log.AccessLog;
import dev.egressproxy.testing.RawClient;
import dev.egressproxy.testing.RecordingOrigin;
import dev.egressproxy.testing.RecordingOrigin.Request;
import dev.egressproxy.testing.TestProxy;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.net.SocketException;
import java.net.SocketTimeoutException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.function.BiPredicate;
import org.junit.jupiter.api.AfterAll;

/**
 * Coverage-guided fuzzing (Jazzer) of the whole plain-HTTP forwarding path, judged by what the
 * origin received. Each input is the header block and body of ONE request: the proxy gets {@code
 * POST http://origin.test/fuzz HTTP/1.1}, {@code Connection: close}, then the input bytes, on a
 * fresh connection, followed by the client's FIN. The test reads the proxy's answer until the
 * proxy closes (at the latest after the idle timeout), closes, and waits until every upstream
 * connection opened for the input has ended. An input that promises more body than it sends is answered
 * {@code 400 request_truncated} once the FIN has arrived (this target found that the proxy used to
 * wait for the rest until {@code timeouts.idle}); the idle timeout is 1 s here all the same, so that
 * anything else that hangs ends quickly and the fuzzer is not stuck. Then the origin, a {@link RecordingOrigin} with a strict parser of its own,
 * must have received at most one request, with the request line {@code POST /fuzz HTTP/1.1}, Host
 * {@code origin.test}, one framing (Content-Length or chunked; none only for an empty body) that
 * delimits the body it received, no Host, Content-Length or Transfer-Encoding trailer field, and
 * nothing else on the connection; and its parser must have found nothing malformed.
 *
 * <p>{@code Connection: close} is what makes "at most one" the right invariant: whatever the input
 * holds after its first request (pipelined requests, smuggled ones), a proxy that has answered a
 * request with Connection: close has no business forwarding anything after it. An input that makes
 * the origin see a second request, a different request line, a foreign Host or a framing the
 * origin reads differently is a smuggling bug.
 *
 * <p>In a normal build this runs the inputs under {@code src/test/resources/.../ForwardingFuzzTestInputs}
 * as regression cases; with {@code JAZZER_FUZZ=1} it fuzzes for the time given here (scripts/test.sh).
 */
class ForwardingFuzzTest {

    private static final byte[] PREFIX = "POST http://origin.test/fuzz HTTP/1.1\r\nConnection: close\r\n"
            .getBytes(StandardCharsets.ISO_8859_1);
    /**
     * How long to read the proxy's answer before giving up on it. The proxy closes the connection
     * once it has answered (Connection: close, or a refusal), and at the latest after the 1 s idle
     * timeout, so reading to its close is what normally ends the read. Reading only until the
     * answer started to come, or for a fixed short while, let a slow first run (cold JIT on CI)
     * close the client before the proxy had opened its upstream connection: that request then
     * reached the origin after {@link RecordingOrigin#awaitQuiet} and was counted for the next input.
     */
    private static final int ANSWER_WAIT_MILLIS = 5_000;
    private static final Duration QUIET = Duration.ofSeconds(10);
    /** The fuzz target dials the proxy and the origin, never anything else. */
    private static final BiPredicate<String, Integer> LOOPBACK = (host, port) -> host.equals("localhost")
            || host.startsWith("127.") || host.equals("::1") || host.equals("0:0:0:0:0:0:0:1");

    private static RecordingOrigin origin;
    private static TestProxy proxy;

    private static synchronized void startOnce() throws Exception {
        if (proxy != null) {
            return;
        }
        // Every input would write an access-log line.
        ((ch.qos.logback.classic.Logger) org.slf4j.LoggerFactory.getLogger(AccessLog.LOGGER))
                .setLevel(ch.qos.logback.classic.Level.OFF);
        origin = new RecordingOrigin();
        proxy = TestProxy.start("""
                allowlist.hosts = ["origin.test"]
                destinations.connect-to { "origin.test:80" = "127.0.0.1:%d" }
                timeouts.idle = 1s
                """.formatted(origin.port()));
    }

    @AfterAll
    static void stop() throws Exception {
        if (proxy != null) {
            proxy.close();
            origin.close();
        }
    }

    @FuzzTest(maxDuration = "20s")
    void oneRequestReachesTheOriginAtMostOnceAsTheProxyFramedIt(byte[] input) throws Exception {
        try (SilentCloseable allowed = BugDetectors.allowNetworkConnections(LOOPBACK)) {
            startOnce();
            origin.reset();
            byte[] answer = send(input);
            origin.awaitQuiet(QUIET);
            check(input, answer);
        }
    }

    private static byte[] send(byte[] input) throws IOException {
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.socket.setSoTimeout(ANSWER_WAIT_MILLIS);
            try {
                raw.send(PREFIX);
                raw.send(input);
                raw.socket.shutdownOutput();
            } catch (SocketException e) {
                // The proxy refused the head and closed while the rest was still on its way.
            }
            return readWhatComes(raw.in());
        }
    }

    private static byte[] readWhatComes(InputStream in) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        byte[] buf = new byte[8192];
        try {
            int n;
            while ((n = in.read(buf)) >= 0) {
                if (out.size() < 1024 * 1024) {
                    out.write(buf, 0, n);
                }
            }
        } catch (SocketTimeoutException | SocketException e) {
            // No more within the wait, or the proxy reset the connection: judge by the origin.
        }
        return out.toByteArray();
    }

    private static void check(byte[] input, byte[] answer) {
        String what = "input " + Text.quote(input) + " answered " + Text.firstLine(answer);
        assertThat(origin.errors()).as("origin parse errors for " + what).isEmpty();
        List<Request> requests = origin.requests();
        assertThat(requests).as("requests at the origin for " + what).hasSizeLessThanOrEqualTo(1);
        assertThat(origin.connections()).as("upstream connections for " + what).hasSizeLessThanOrEqualTo(1);
        for (RecordingOrigin.Connection c : origin.connections()) {
            assertThat(c.leftover()).as("leftover bytes at the origin for " + what).isEmpty();
        }
        if (requests.isEmpty()) {
            return;
        }
        Request r = requests.get(0);
        assertThat(r.requestLine()).as("request line for " + what).isEqualTo("POST /fuzz HTTP/1.1");
        assertThat(r.values("host")).as("Host for " + what).containsExactly("origin.test");
        for (String forbidden : List.of("host", "content-length", "transfer-encoding")) {
            assertThat(r.trailerValues(forbidden)).as(forbidden + " trailer field for " + what).isEmpty();
        }
        List<String> length = r.values("content-length");
        List<String> te = r.values("transfer-encoding");
        assertThat(length.isEmpty() || te.isEmpty()).as("one framing for " + what + ": " + r).isTrue();
        if (r.chunked()) {
            assertThat(te).as("Transfer-Encoding for " + what).containsExactly("chunked");
        } else if (!length.isEmpty()) {
            long declared = Long.parseLong(length.get(0));
            if (r.complete()) {
                assertThat((long) r.body().length).as("body bytes for " + what).isEqualTo(declared);
            } else {
                assertThat((long) r.body().length).as("body bytes for " + what).isLessThan(declared);
            }
        } else {
            assertThat(r.body()).as("unframed body for " + what).isEmpty();
        }
    }

    /** Short printable renderings for assertion messages. */
    private static final class Text {
        static String quote(byte[] b) {
            StringBuilder sb = new StringBuilder("\"");
            for (int i = 0; i < b.length && i < 300; i++) {
                int c = b[i] & 0xff;
                if (c == '\r') {
                    sb.append("\\r");
                } else if (c == '\n') {
                    sb.append("\\n");
                } else if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
                    sb.append((char) c);
                } else {
                    sb.append(String.format("\\x%02x", c));
                }
            }
            return sb.append(b.length > 300 ? "...\"" : "\"").toString();
        }

        static String firstLine(byte[] answer) {
            String s = new String(answer, StandardCharsets.ISO_8859_1);
            int end = s.indexOf("\r\n");
            return answer.length == 0 ? "(nothing)" : quote((end < 0 ? s : s.substring(0, end)).getBytes(StandardCharsets.ISO_8859_1));
        }
    }
}
