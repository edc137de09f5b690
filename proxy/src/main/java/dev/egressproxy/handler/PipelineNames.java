package dev.egressproxy.handler;

/**
 * Every handler name used in our pipelines, in one place, so the order can be read and a handler
 * found or replaced by name. All start with {@code egress.}.
 */
public final class PipelineNames {

    private PipelineNames() {
    }

    // Client side, in pipeline order.
    /**
     * listen.proxy-protocol only: Netty's HAProxyMessageDecoder, first of all (the header comes
     * before any other byte, TLS included); removes itself once the header is read.
     */
    public static final String PROXY_PROTOCOL_DECODER = "egress.proxy-protocol-decoder";
    /** listen.proxy-protocol only: judges the header and sets the client address; removed once it has. */
    public static final String PROXY_PROTOCOL = "egress.proxy-protocol";
    /** Netty's SslHandler on the TLS listener ({@code listen.tls}); absent on a plain listener. */
    public static final String TLS = "egress.tls";
    /** Behind {@link #TLS}: the handshake's outcome (identities, or count and close); removed once it succeeded. */
    public static final String TLS_HANDSHAKE = "egress.tls-handshake";
    public static final String CONNECTION_LIMIT = "egress.connection-limit";
    public static final String CLIENT_GUARD = "egress.client-guard";
    public static final String IDLE = "egress.idle";
    public static final String HEAD_GUARD = "egress.head-guard";
    public static final String HTTP_CODEC = "egress.http-codec";
    public static final String FLOW_CONTROL = "egress.flow-control";
    public static final String REQUEST_HEAD_TIMEOUT = "egress.request-head-timeout";
    public static final String REQUEST_POLICY = "egress.request-policy";
    public static final String CONNECT_TUNNEL = "egress.connect-tunnel";
    public static final String HTTP_FORWARD = "egress.http-forward";
    /** Replaces the HTTP handlers on the client side once a tunnel is established. */
    public static final String RELAY = "egress.relay";
    /**
     * In front of the client side's relay of a tunnel to a TLS port, from the 200 until the
     * ClientHello's server name is judged (tunnels.sni-check).
     */
    public static final String SNI_CHECK = "egress.sni-check";

    // Upstream side.
    public static final String UPSTREAM_HTTP_CODEC = "egress.upstream-http-codec";
    public static final String UPSTREAM_RESPONSE = "egress.upstream-response";
    /**
     * First on a connection to the parent proxy of a tunnel (upstream-proxy), from the connect
     * until the parent answered the CONNECT (and the tunnel took any bytes behind that answer).
     */
    public static final String PARENT_HANDSHAKE = "egress.parent-handshake";

    // Admin listener.
    public static final String ADMIN_HTTP_CODEC = "egress.admin-http-codec";
    public static final String ADMIN_AGGREGATOR = "egress.admin-aggregator";
    public static final String ADMIN_HANDLER = "egress.admin";
}
