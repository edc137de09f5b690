package dev.egressproxy.server;

import dev.egressproxy.config.ProxyConfig;
import io.netty.handler.ssl.ClientAuth;
import io.netty.handler.ssl.SslContext;
import io.netty.handler.ssl.SslContextBuilder;
import io.netty.handler.ssl.SslProvider;
import java.security.cert.X509Certificate;
import java.util.concurrent.atomic.AtomicReference;
import javax.net.ssl.SSLException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The server TLS context of the proxy listener ({@code listen.tls}), rebuilt from each loaded
 * configuration: every new client connection takes the one in force when it is accepted, and an
 * open connection keeps the one its handshake used. The files were read and checked by the config
 * loader, so a reload with a broken file never gets here (it is refused, and the old context stays).
 */
public final class ListenerTls {

    private static final Logger log = LoggerFactory.getLogger(ListenerTls.class);

    private final boolean enabled;
    private final AtomicReference<SslContext> current = new AtomicReference<>();
    /** What {@link #current} was built from (only touched by the start and the reloader). */
    private ProxyConfig.ListenTls built;

    /** Whether the listener speaks TLS is fixed by the configuration it starts with. */
    public ListenerTls(ProxyConfig.ListenTls tls) throws SSLException {
        this.enabled = tls.enabled();
        if (enabled) {
            current.set(build(tls));
            built = tls;
        }
    }

    /** The context for the next connection; null when the listener speaks plain HTTP. */
    public SslContext current() {
        return current.get();
    }

    public boolean enabled() {
        return enabled;
    }

    /**
     * Puts the certificate, key and client CAs of a reloaded configuration in force for new
     * connections. A TLS listener stays TLS (and a plain one plain) until a restart; a context that
     * cannot be built (never expected: the loader checked the files) keeps the old one, with an ERROR.
     */
    public synchronized void reload(ProxyConfig.ListenTls tls) {
        if (!enabled || !tls.enabled()) {
            return;
        }
        // The key belongs to the leaf certificate (the loader checks), so the chain and the CAs say
        // whether anything changed; an unchanged reload keeps the context it has.
        if (tls.chain().equals(built.chain()) && tls.clientCas().equals(built.clientCas())) {
            return;
        }
        try {
            current.set(build(tls));
            built = tls;
            log.info("listen.tls reloaded: new connections get {}", describe(tls));
        } catch (SSLException | RuntimeException e) {
            log.error("listen.tls: the reloaded certificate ({}) cannot be used, new connections keep the previous one: {}",
                    tls.certificate(), e.toString());
        }
    }

    /** Describes what the listener presents, for the start-up and reload log lines. */
    public static String describe(ProxyConfig.ListenTls tls) {
        if (!tls.enabled()) {
            return "plain HTTP";
        }
        X509Certificate leaf = tls.chain().get(0);
        return "TLS (" + leaf.getSubjectX500Principal() + ", valid until " + leaf.getNotAfter().toInstant()
                + (tls.mutual() ? "; client certificates required, " + tls.clientCas().size() + " CA(s) from " + tls.clientCa()
                : "") + ")";
    }

    static SslContext build(ProxyConfig.ListenTls tls) throws SSLException {
        SslContextBuilder builder = SslContextBuilder.forServer(tls.key(), tls.chain().toArray(X509Certificate[]::new))
                // The JDK's TLS: no native library to ship.
                .sslProvider(SslProvider.JDK)
                .protocols("TLSv1.3", "TLSv1.2");
        if (tls.mutual()) {
            builder.trustManager(tls.clientCas().toArray(X509Certificate[]::new)).clientAuth(ClientAuth.REQUIRE);
        }
        return builder.build();
    }
}
