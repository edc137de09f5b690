package dev.egressproxy.server;

import dev.egressproxy.guard.ClientGuardHandler;
import dev.egressproxy.guard.ConnectionLimitHandler;
import dev.egressproxy.guard.HeadGuardHandler;
import dev.egressproxy.guard.IdleCloseHandler;
import dev.egressproxy.guard.RequestHeadTimeoutHandler;
import dev.egressproxy.handler.PipelineNames;
import dev.egressproxy.handler.ProxyServices;
import dev.egressproxy.handler.RequestPolicyHandler;
import dev.egressproxy.http.HttpForwardHandler;
import dev.egressproxy.tunnel.ConnectTunnelHandler;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.ChannelPipeline;
import io.netty.channel.group.ChannelGroup;
import io.netty.channel.socket.SocketChannel;
import io.netty.handler.codec.http.HttpDecoderConfig;
import io.netty.handler.codec.http.HttpServerCodec;
import io.netty.handler.flow.FlowControlHandler;

/**
 * Builds a client connection's pipeline. In order:
 *
 * <pre>
 *  connection-limit  count; 503 past the connection cap or at the memory budget
 *  client-guard      clients.allow and clients.max-connections-per-client
 *  idle              close after timeouts.idle without traffic
 *  head-guard        400 on obsolete line folding                   (removed for a tunnel)
 *  http-codec        HTTP/1.x decode + encode, head size limits      (removed for a tunnel)
 *  flow-control      hold decoded messages while reading is paused  (removed for a tunnel)
 *  request-head-timeout  408 if no complete head in time          (removed for a tunnel)
 *  request-policy    parse the destination, proxy authentication (auth.basic),
 *                    allowlist decision                              (removed for a tunnel)
 *  connect-tunnel    CONNECT: connect upstream, 200, then relay     (replaced by relay, and for a
 *                    TLS port by sni-check in front of it until the ClientHello is judged)
 *  http-forward      absolute-form requests: forward and stream     (removed for a tunnel)
 * </pre>
 *
 * After a CONNECT succeeds the pipeline is {@code connection-limit, client-guard, idle, relay}.
 */
public final class ProxyChannelInitializer extends ChannelInitializer<SocketChannel> {

    private final ProxyServices services;
    private final ConnectionLimitHandler connectionLimit;
    private final ClientGuardHandler clientGuard;
    private final ChannelGroup channels;

    public ProxyChannelInitializer(ProxyServices services, ChannelGroup channels) {
        this.services = services;
        this.channels = channels;
        this.connectionLimit = new ConnectionLimitHandler(services.metrics(), services.fds(), services.memory());
        this.clientGuard = new ClientGuardHandler(() -> services.live().get().config().clients(), services.metrics());
    }

    /** The per-client guard shared by every connection (its counts, for tests). */
    public ClientGuardHandler clientGuard() {
        return clientGuard;
    }

    @Override
    protected void initChannel(SocketChannel ch) {
        channels.add(ch);
        ChannelPipeline p = ch.pipeline();
        addConnectionHandlers(p);
        addHttpHandlers(p);
        addProxyHandlers(p);
    }

    private void addConnectionHandlers(ChannelPipeline p) {
        p.addLast(PipelineNames.CONNECTION_LIMIT, connectionLimit);
        p.addLast(PipelineNames.CLIENT_GUARD, clientGuard);
        p.addLast(PipelineNames.IDLE, new IdleCloseHandler(services.config().timeouts().idle(), services.metrics()));
    }

    private void addHttpHandlers(ChannelPipeline p) {
        int maxHead = services.config().limits().maxRequestHead();
        HttpDecoderConfig decoder = new HttpDecoderConfig()
                .setMaxInitialLineLength(maxHead)
                .setMaxHeaderSize(maxHead)
                .setMaxChunkSize(64 * 1024)
                .setValidateHeaders(true)
                // Request smuggling defences: CRLF only, RFC 9112 Transfer-Encoding rules, a single
                // Content-Length. RequestPolicyHandler adds what the decoder does not check.
                .setStrictLineParsing(true)
                .setUseRfc9112TransferEncoding(true)
                .setAllowDuplicateContentLengths(false);
        p.addLast(PipelineNames.HEAD_GUARD, new HeadGuardHandler(services, maxHead));
        p.addLast(PipelineNames.HTTP_CODEC, new HttpServerCodec(decoder));
        p.addLast(PipelineNames.FLOW_CONTROL, new FlowControlHandler());
        p.addLast(PipelineNames.REQUEST_HEAD_TIMEOUT,
                new RequestHeadTimeoutHandler(services.config().timeouts().requestHead(), services.metrics()));
    }

    private void addProxyHandlers(ChannelPipeline p) {
        p.addLast(PipelineNames.REQUEST_POLICY, new RequestPolicyHandler(services));
        p.addLast(PipelineNames.CONNECT_TUNNEL, new ConnectTunnelHandler(services));
        p.addLast(PipelineNames.HTTP_FORWARD, new HttpForwardHandler(services));
    }
}
