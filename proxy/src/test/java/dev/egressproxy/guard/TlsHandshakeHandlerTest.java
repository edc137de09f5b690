package dev.egressproxy.guard;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressproxy.tls.HandshakeFailure;
import io.netty.handler.ssl.NotSslRecordException;
import io.netty.handler.ssl.SslHandshakeTimeoutException;
import java.io.IOException;
import java.nio.channels.ClosedChannelException;
import java.security.cert.CertPathBuilderException;
import java.security.cert.CertPathValidatorException;
import java.security.cert.CertificateException;
import java.security.cert.CertificateExpiredException;
import java.util.stream.Stream;
import javax.net.ssl.SSLException;
import javax.net.ssl.SSLHandshakeException;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * How a failed handshake's cause becomes a {@link HandshakeFailure} reason, with the exceptions
 * the JDK's TLS and Netty raise (TlsListenerIT meets the real ones over sockets).
 */
class TlsHandshakeHandlerTest {

    static Stream<Arguments> causes() {
        return Stream.of(
                Arguments.of("handshake timeout", new SslHandshakeTimeoutException("handshake timed out after 2000ms"),
                        HandshakeFailure.TIMEOUT),
                Arguments.of("plain HTTP to the TLS port", new NotSslRecordException("not an SSL/TLS record: 474554"),
                        HandshakeFailure.NOT_TLS),
                Arguments.of("closed during the handshake", new ClosedChannelException(), HandshakeFailure.CLOSED),
                Arguments.of("reset during the handshake", new IOException("Connection reset by peer"), HandshakeFailure.CLOSED),
                Arguments.of("no client certificate (TLS 1.3)", new SSLHandshakeException("Empty client certificate chain"),
                        HandshakeFailure.NO_CLIENT_CERTIFICATE),
                Arguments.of("unknown CA", handshake("PKIX path building failed",
                        new CertificateException("no path", new CertPathBuilderException("unable to find valid certification path"))),
                        HandshakeFailure.UNTRUSTED_CERTIFICATE),
                Arguments.of("expired, from the validator", handshake("PKIX path validation failed",
                        new CertificateException(new CertPathValidatorException("validity check failed",
                                new CertificateExpiredException("NotAfter: Thu Jan 02 00:00:00 UTC 2020"), null, -1,
                                CertPathValidatorException.BasicReason.EXPIRED))),
                        HandshakeFailure.EXPIRED_CERTIFICATE),
                Arguments.of("client refuses the proxy's certificate", new SSLHandshakeException("Received fatal alert: bad_certificate"),
                        HandshakeFailure.CLIENT_ALERT),
                Arguments.of("no common cipher", new SSLHandshakeException("no cipher suites in common"), HandshakeFailure.PROTOCOL),
                Arguments.of("other TLS error", new SSLException("Unsupported or unrecognized SSL message"), HandshakeFailure.PROTOCOL));
    }

    private static SSLHandshakeException handshake(String message, Throwable cause) {
        SSLHandshakeException e = new SSLHandshakeException(message);
        e.initCause(cause);
        return e;
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("causes")
    void sortsTheCauseIntoAReason(String name, Throwable cause, HandshakeFailure expected) {
        assertThat(TlsHandshakeHandler.classify(cause)).isEqualTo(expected);
    }
}
