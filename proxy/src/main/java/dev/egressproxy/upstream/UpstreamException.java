package dev.egressproxy.upstream;

import java.io.IOException;

/**
 * Why {@link UpstreamConnector} could not give a connection: either the resolved address is one
 * the address policy forbids ({@link #addressForbidden()}), or the upstream failed with a
 * {@link FailureCause}. {@link #clientText()} is safe to send to the client; {@link #getMessage()}
 * may contain addresses and goes only to the log.
 */
public final class UpstreamException extends IOException {
    private static final long serialVersionUID = 1L;

    private final transient FailureCause cause;
    private final String clientText;

    private UpstreamException(FailureCause cause, String clientText, String logText) {
        super(logText, null);
        this.cause = cause;
        this.clientText = clientText;
    }

    public static UpstreamException failure(FailureCause cause, String clientText, String logText) {
        return new UpstreamException(cause, clientText, logText);
    }

    public static UpstreamException addressForbidden(String clientText, String logText) {
        return new UpstreamException(null, clientText, logText);
    }

    /** The failure cause, or {@code null} when the address policy refused the destination. */
    public FailureCause failureCause() {
        return cause;
    }

    public boolean addressForbidden() {
        return cause == null;
    }

    public String clientText() {
        return clientText;
    }

    @Override
    public synchronized Throwable fillInStackTrace() {
        return this;
    }
}
