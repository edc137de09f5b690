package dev.egressproxy.guard;

import dev.egressproxy.metrics.ProxyMetrics;
import dev.egressproxy.policy.AddressText;
import dev.egressproxy.tls.CertificateIdentities;
import dev.egressproxy.tls.HandshakeFailure;
import dev.egressproxy.util.LogThrottle;
import io.netty.channel.ChannelHandler.Sharable;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.handler.ssl.NotSslRecordException;
import io.netty.handler.ssl.SslHandler;
import io.netty.handler.ssl.SslHandshakeCompletionEvent;
import io.netty.handler.ssl.SslHandshakeTimeoutException;
import java.io.IOException;
import java.nio.channels.ClosedChannelException;
import java.security.cert.CertPathBuilderException;
import java.security.cert.CertPathValidatorException;
import java.security.cert.Certificate;
import java.security.cert.CertificateException;
import java.security.cert.CertificateExpiredException;
import java.security.cert.CertificateNotYetValidException;
import java.security.cert.X509Certificate;
import java.util.List;
import java.util.concurrent.TimeUnit;
import javax.net.ssl.SSLException;
import javax.net.ssl.SSLPeerUnverifiedException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Right behind the TLS handler ({@code egress.tls}, Netty's {@code SslHandler}) on a client
 * connection to the TLS listener ({@code listen.tls}). Consumes the handshake's outcome:
 * <ul>
 *   <li>success: with a verified client certificate ({@code client-ca}), sets its identities
 *       ({@link CertificateIdentities}) on the connection's {@link ClientIdentity}, before the first
 *       decrypted byte passes on, then removes itself;
 *   <li>failure (timeout, plain text, no or an untrusted or expired client certificate, ...):
 *       counts {@code egress_proxy_tls_handshake_failures_total{reason}}, logs a throttled WARN
 *       (except for a client that just closed: a TCP probe) and closes the connection. The
 *       exceptions the failed handshake raises stop here instead of reaching the HTTP handlers.
 * </ul>
 * Finds the TLS handler by type, not position: a PROXY protocol decoder may sit in front of it.
 * Shared by all connections; its only state is the log throttle.
 */
@Sharable
public final class TlsHandshakeHandler extends ChannelInboundHandlerAdapter {

    private static final Logger log = LoggerFactory.getLogger(TlsHandshakeHandler.class);

    private final ProxyMetrics metrics;
    private final LogThrottle throttle = new LogThrottle(10, TimeUnit.SECONDS);

    public TlsHandshakeHandler(ProxyMetrics metrics) {
        this.metrics = metrics;
    }

    @Override
    public void userEventTriggered(ChannelHandlerContext ctx, Object evt) {
        if (evt instanceof SslHandshakeCompletionEvent done) {
            if (done.isSuccess()) {
                succeeded(ctx);
            } else {
                failed(ctx, done.cause());
            }
        }
        ctx.fireUserEventTriggered(evt);
    }

    @Override
    public void channelRead(ChannelHandlerContext ctx, Object msg) {
        // Decrypted bytes pass only after a successful handshake; should they come before its
        // event, the identities are set first all the same.
        succeeded(ctx);
        ctx.fireChannelRead(msg);
    }

    @Override
    public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
        // Before the handshake succeeded every exception is the handshake's (or the socket's
        // under it): the completion event counts and logs it, and the connection closes.
        ctx.close();
    }

    private void succeeded(ChannelHandlerContext ctx) {
        if (ctx.isRemoved()) {
            return;
        }
        SslHandler tls = ctx.pipeline().get(SslHandler.class);
        List<String> identities = tls == null ? List.of() : identities(tls);
        if (!identities.isEmpty()) {
            ClientIdentity.set(ctx.channel(), ClientIdentity.of(ctx.channel()).withCertificateIdentities(identities));
        }
        ctx.pipeline().remove(this);
    }

    private static List<String> identities(SslHandler tls) {
        try {
            Certificate[] peer = tls.engine().getSession().getPeerCertificates();
            return peer.length > 0 && peer[0] instanceof X509Certificate leaf ? CertificateIdentities.of(leaf) : List.of();
        } catch (SSLPeerUnverifiedException e) {
            return List.of(); // no client-ca: no certificate asked for
        }
    }

    private void failed(ChannelHandlerContext ctx, Throwable cause) {
        HandshakeFailure reason = classify(cause);
        metrics.tlsHandshakeFailed(reason);
        if (reason != HandshakeFailure.CLOSED) {
            LogThrottle.Due due = throttle.event();
            if (due != null) {
                log.warn("TLS handshake from {} failed ({}: {}); {} failed handshake(s) in the last {} s "
                        + "(egress_proxy_tls_handshake_failures_total)", AddressText.of(ClientIdentity.of(ctx.channel()).address()),
                        reason.label(), String.valueOf(cause.getMessage()), due.events(), due.seconds());
            }
        }
        ctx.close();
    }

    /** Sorts a failed handshake's cause into one of the {@link HandshakeFailure} reasons. */
    static HandshakeFailure classify(Throwable cause) {
        if (cause instanceof SslHandshakeTimeoutException) {
            return HandshakeFailure.TIMEOUT;
        }
        if (cause instanceof NotSslRecordException) {
            return HandshakeFailure.NOT_TLS;
        }
        if (cause instanceof ClosedChannelException) {
            return HandshakeFailure.CLOSED;
        }
        for (Throwable t = cause; t != null; t = t.getCause()) {
            if (t instanceof CertificateExpiredException || t instanceof CertificateNotYetValidException
                    || t instanceof CertPathValidatorException v
                            && (v.getReason() == CertPathValidatorException.BasicReason.EXPIRED
                                    || v.getReason() == CertPathValidatorException.BasicReason.NOT_YET_VALID)) {
                return HandshakeFailure.EXPIRED_CERTIFICATE;
            }
        }
        for (Throwable t = cause; t != null; t = t.getCause()) {
            String message = String.valueOf(t.getMessage());
            // The JDK's words when a required client certificate is missing (TLS 1.2 and 1.3).
            if (message.contains("Empty client certificate chain") || message.contains("certificate_required")) {
                return HandshakeFailure.NO_CLIENT_CERTIFICATE;
            }
            if (t instanceof CertPathBuilderException || t instanceof CertPathValidatorException
                    || t instanceof CertificateException) {
                return HandshakeFailure.UNTRUSTED_CERTIFICATE;
            }
            if (message.startsWith("Received fatal alert")) {
                return HandshakeFailure.CLIENT_ALERT;
            }
        }
        if (cause instanceof IOException && !(cause instanceof SSLException)) {
            return HandshakeFailure.CLOSED; // reset by the client
        }
        return HandshakeFailure.PROTOCOL;
    }
}
