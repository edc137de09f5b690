package dev.egressproxy.upstream;

import io.netty.handler.codec.http.HttpResponseStatus;

/**
 * Why a destination routed through the parent proxy ({@code upstream-proxy}) could not be reached:
 * the parent itself could not be reached, or it answered with something else than 2xx. The label
 * is the {@code cause} label of {@code egress_proxy_parent_failures_total}, and with {@code parent_}
 * before it the reason of the destination's {@code /denied} entry; the reason code (the
 * {@code X-Egress-Proxy-Reason} header and the access log's {@code error}) is coarser:
 * {@code parent_refused} for an answer, {@code parent_timeout} for silence, {@code parent_unreachable}
 * for the rest.
 */
public enum ParentFailure {
    DNS("dns", Code.UNREACHABLE),
    /** Not "refused", which would read as the parent refusing the destination. */
    REFUSED("connection_refused", Code.UNREACHABLE),
    TIMEOUT("timeout", Code.TIMEOUT),
    RESET("reset", Code.UNREACHABLE),
    UNREACHABLE("unreachable", Code.UNREACHABLE),
    /** Every address of the parent timed out recently (upstream.fast-fail): not dialled. */
    UNREACHABLE_RECENTLY("unreachable_recently", Code.TIMEOUT),
    /** The parent's name resolves only to addresses the address policy forbids. */
    ADDRESS_NOT_ALLOWED("address_not_allowed", Code.UNREACHABLE),
    /** The parent refused the destination (its own policy). */
    ANSWERED_403("answered_403", Code.REFUSED),
    /** The parent wants other credentials than upstream-proxy.user and password-file. */
    ANSWERED_407("answered_407", Code.REFUSED),
    /** The parent could not reach the destination (502, 503, 504...). */
    ANSWERED_5XX("answered_5xx", Code.REFUSED),
    ANSWERED_OTHER("answered_other", Code.REFUSED),
    /** The parent's answer was not HTTP, too large, or it closed before answering. */
    BAD_RESPONSE("bad_response", Code.UNREACHABLE);

    private enum Code {
        REFUSED("parent_refused", HttpResponseStatus.BAD_GATEWAY),
        UNREACHABLE("parent_unreachable", HttpResponseStatus.BAD_GATEWAY),
        TIMEOUT("parent_timeout", HttpResponseStatus.GATEWAY_TIMEOUT);

        final String reason;
        final HttpResponseStatus status;

        Code(String reason, HttpResponseStatus status) {
            this.reason = reason;
            this.status = status;
        }
    }

    private final String label;
    private final Code code;

    ParentFailure(String label, Code code) {
        this.label = label;
        this.code = code;
    }

    public String label() {
        return label;
    }

    /** 504 when the parent never answered, 502 otherwise. */
    public HttpResponseStatus status() {
        return code.status;
    }

    /** {@code parent_refused}, {@code parent_unreachable} or {@code parent_timeout}. */
    public String reasonCode() {
        return code.reason;
    }

    /** The failure to reach the parent itself, by the cause a direct connection would have. */
    public static ParentFailure of(FailureCause cause) {
        return switch (cause) {
            case DNS -> DNS;
            case REFUSED -> REFUSED;
            case TIMEOUT -> TIMEOUT;
            case RESET -> RESET;
            case UNREACHABLE -> UNREACHABLE;
            case UNREACHABLE_RECENTLY -> UNREACHABLE_RECENTLY;
        };
    }

    /** The parent's non-2xx answer to a CONNECT (or a 407 to a forwarded request). */
    public static ParentFailure answered(int status) {
        if (status == 403) {
            return ANSWERED_403;
        }
        if (status == 407) {
            return ANSWERED_407;
        }
        return status >= 500 && status <= 599 ? ANSWERED_5XX : ANSWERED_OTHER;
    }
}
