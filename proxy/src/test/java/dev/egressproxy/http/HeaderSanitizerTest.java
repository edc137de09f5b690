package dev.egressproxy.http;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressproxy.http.HeaderSanitizer.Framing;
import io.netty.handler.codec.http.DefaultHttpHeaders;
import io.netty.handler.codec.http.DefaultHttpRequest;
import io.netty.handler.codec.http.HttpHeaders;
import io.netty.handler.codec.http.HttpMethod;
import io.netty.handler.codec.http.HttpRequest;
import io.netty.handler.codec.http.HttpVersion;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/** Which header fields cross the proxy, and which a Connection token can never remove. */
class HeaderSanitizerTest {

    static Stream<Arguments> connectionTokens() {
        return Stream.of(
                Arguments.of("Content-Length named", "content-length", List.of("content-length"), List.of()),
                Arguments.of("Transfer-Encoding named", "Transfer-Encoding", List.of("transfer-encoding"), List.of()),
                Arguments.of("Host named", "host", List.of("host"), List.of()),
                Arguments.of("Via and Trailer named", "via, trailer", List.of("via", "trailer"), List.of()),
                Arguments.of("odd spacing and case", ",,CONTENT-LENGTH , x-a ,", List.of("content-length"),
                        List.of("x-a")),
                Arguments.of("keep-alive with framing", "keep-alive, Content-Length", List.of("content-length"),
                        List.of("keep-alive")),
                Arguments.of("ordinary tokens", "close, x-a, x-b", List.of(), List.of("x-a", "x-b")));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("connectionTokens")
    void connectionTokensNeverRemoveFramingOrRoutingFields(String name, String connection, List<String> kept,
            List<String> removed) {
        HttpHeaders h = new DefaultHttpHeaders()
                .add("Connection", connection)
                .add("Content-Length", "5").add("Transfer-Encoding", "chunked").add("Host", "origin.test")
                .add("Via", "1.1 a").add("Trailer", "X-Sum").add("X-A", "1").add("X-B", "2").add("Keep-Alive", "t=5");
        HeaderSanitizer.stripHopByHop(h);
        for (String k : kept) {
            assertThat(h.contains(k)).as(k).isTrue();
        }
        for (String r : removed) {
            assertThat(h.contains(r)).as(r).isFalse();
        }
        assertThat(h.contains("Connection")).isFalse();
        assertThat(h.contains("Keep-Alive")).isFalse();
    }

    @Test
    void proxyConnectionTokensAreHonouredTheSameWay() {
        HttpHeaders h = new DefaultHttpHeaders().add("Proxy-Connection", "x-a, content-length")
                .add("X-A", "1").add("Content-Length", "3");
        HeaderSanitizer.stripHopByHop(h);
        assertThat(h.names()).containsExactly("Content-Length");
    }

    @Test
    void framingIsWrittenFromTheDecision() {
        HttpHeaders h = new DefaultHttpHeaders().add("Content-Length", "007").add("Transfer-Encoding", "chunked");
        HeaderSanitizer.frame(h, Framing.LENGTH, 7);
        assertThat(h.getAll("Content-Length")).containsExactly("7");
        assertThat(h.contains("Transfer-Encoding")).isFalse();
        HeaderSanitizer.frame(h, Framing.CHUNKED, 0);
        assertThat(h.getAll("Transfer-Encoding")).containsExactly("chunked");
        assertThat(h.contains("Content-Length")).isFalse();
        HeaderSanitizer.frame(h, Framing.NONE, 0);
        assertThat(h.isEmpty()).isTrue();
    }

    @Test
    void framingOfARequestIsTheDecoders() {
        HttpRequest chunked = new DefaultHttpRequest(HttpVersion.HTTP_1_1, HttpMethod.POST, "/");
        chunked.headers().add("Transfer-Encoding", "chunked");
        HttpRequest length = new DefaultHttpRequest(HttpVersion.HTTP_1_1, HttpMethod.POST, "/");
        length.headers().add("Content-Length", "0");
        HttpRequest none = new DefaultHttpRequest(HttpVersion.HTTP_1_1, HttpMethod.GET, "/");
        assertThat(HeaderSanitizer.framingOf(chunked)).isEqualTo(Framing.CHUNKED);
        assertThat(HeaderSanitizer.framingOf(length)).isEqualTo(Framing.LENGTH);
        assertThat(HeaderSanitizer.framingOf(none)).isEqualTo(Framing.NONE);
    }

    @Test
    void viaKeepsEveryEarlierValueAndAddsOursLast() {
        HttpHeaders h = new DefaultHttpHeaders().add("Via", "1.1 a").add("Via", "1.0 b, 1.1 c");
        HeaderSanitizer.addVia(h, HttpVersion.HTTP_1_0);
        assertThat(h.getAll("Via")).containsExactly("1.1 a", "1.0 b, 1.1 c", "1.0 egress-proxy");
    }

    @Test
    void trailersThatMayNotBeTrailersAreDropped() {
        HttpHeaders t = new DefaultHttpHeaders().add("X-Checksum", "abc").add("Content-Length", "5")
                .add("transfer-encoding", "chunked").add("Host", "evil.example").add("Connection", "close")
                .add("Authorization", "Basic x");
        HeaderSanitizer.sanitiseTrailers(t);
        assertThat(t.names()).containsExactly("X-Checksum");
    }
}
