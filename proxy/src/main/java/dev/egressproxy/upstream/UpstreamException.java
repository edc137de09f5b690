package dev.egressproxy.upstream;

import java.io.IOException;
import java.net.SocketAddress;

/**
 * Why {@link UpstreamConnector} could not give a connection: either the resolved address is one
 * the address policy forbids ({@link #addressForbidden()}), or the upstream failed with a
 * {@link FailureCause}, or the parent proxy the destination is routed through failed
 * ({@link #parentFailure()}). {@link #clientText()} is safe to send to the client;
 * {@link #getMessage()} may contain addresses and goes only to the log.
 */
public final class UpstreamException extends IOException {
    private static final long serialVersionUID = 1L;

    private final transient FailureCause cause;
    private final transient ParentFailure parentFailure;
    private final transient SocketAddress parentAddress;
    private final String clientText;

    private UpstreamException(FailureCause cause, ParentFailure parentFailure, SocketAddress parentAddress,
            String clientText, String logText) {
        super(logText, null);
        this.cause = cause;
        this.parentFailure = parentFailure;
        this.parentAddress = parentAddress;
        this.clientText = clientText;
    }

    public static UpstreamException failure(FailureCause cause, String clientText, String logText) {
        return new UpstreamException(cause, null, null, clientText, logText);
    }

    public static UpstreamException addressForbidden(String clientText, String logText) {
        return new UpstreamException(null, null, null, clientText, logText);
    }

    /**
     * The parent proxy failed: {@code parentAddress} is the address it was reached at, or null
     * when no connection to it was made.
     */
    public static UpstreamException parent(ParentFailure failure, SocketAddress parentAddress, String clientText,
            String logText) {
        return new UpstreamException(null, failure, parentAddress, clientText, logText);
    }

    /** The failure cause of a direct connection, or {@code null}. */
    public FailureCause failureCause() {
        return cause;
    }

    /** The parent proxy's failure, or {@code null} when the destination was dialled directly. */
    public ParentFailure parentFailure() {
        return parentFailure;
    }

    /** The address the parent was reached at, or null. */
    public SocketAddress parentAddress() {
        return parentAddress;
    }

    public boolean addressForbidden() {
        return cause == null && parentFailure == null;
    }

    public String clientText() {
        return clientText;
    }

    @Override
    public synchronized Throwable fillInStackTrace() {
        return this;
    }
}
