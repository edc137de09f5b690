package dev.egressproxy.upstream;

import io.netty.handler.codec.http.HttpResponseStatus;

/**
 * Why an allowed destination could not be reached: the firewall or DNS beyond the proxy is the
 * gap. The label is the {@code cause} metric label and the suffix of the reason header.
 */
public enum FailureCause {
    DNS("dns", HttpResponseStatus.BAD_GATEWAY),
    REFUSED("refused", HttpResponseStatus.BAD_GATEWAY),
    TIMEOUT("timeout", HttpResponseStatus.GATEWAY_TIMEOUT),
    RESET("reset", HttpResponseStatus.BAD_GATEWAY),
    UNREACHABLE("unreachable", HttpResponseStatus.BAD_GATEWAY),
    /**
     * Not dialled: every address of the destination timed out recently and is in its fast-fail
     * cool-down ({@code upstream.fast-fail}); answered at once.
     */
    UNREACHABLE_RECENTLY("unreachable_recently", HttpResponseStatus.GATEWAY_TIMEOUT);

    private final String label;
    private final HttpResponseStatus status;

    FailureCause(String label, HttpResponseStatus status) {
        this.label = label;
        this.status = status;
    }

    public String label() {
        return label;
    }

    /** 502 for failures the upstream side reported, 504 when it never answered. */
    public HttpResponseStatus status() {
        return status;
    }

    /** The code sent in the {@code X-Egress-Proxy-Reason} header, e.g. {@code upstream_timeout}. */
    public String reasonCode() {
        return "upstream_" + label;
    }
}
