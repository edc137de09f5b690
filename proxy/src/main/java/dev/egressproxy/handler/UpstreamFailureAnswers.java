package dev.egressproxy.handler;

import dev.egressproxy.log.AccessRecord;
import dev.egressproxy.metrics.DeniedReport;
import dev.egressproxy.policy.Reason;
import dev.egressproxy.upstream.UpstreamException;
import io.netty.handler.codec.http.FullHttpResponse;
import io.netty.handler.codec.http.HttpResponseStatus;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Turns a failed upstream connection into the client's answer, for CONNECT and plain HTTP alike:
 * 403 when the resolved address is one the address policy forbids (the address goes to the log,
 * never to the client), 502 or 504 naming the host and the cause otherwise; when the parent proxy
 * failed, 502 or 504 naming the parent, the destination and the parent's status. Records the outcome in
 * {@code requests_total}, {@code denied_total}, the {@code /denied} report and the access log.
 */
public final class UpstreamFailureAnswers {

    private static final Logger log = LoggerFactory.getLogger(UpstreamFailureAnswers.class);

    private UpstreamFailureAnswers() {
    }

    public static FullHttpResponse answer(ProxyServices services, ProxyRequest request, Throwable cause) {
        AccessRecord record = request.record();
        String authority = request.target().authority();
        HttpResponseStatus status;
        String code;
        String text;
        if (cause instanceof UpstreamException ue && ue.addressForbidden()) {
            services.metrics().request(request.kind(), Reason.ADDRESS_NOT_ALLOWED);
            // The address policy is every policy's; the label names the policy that admitted the name.
            services.metrics().denied(request.target().host(), Reason.ADDRESS_NOT_ALLOWED, record.policy());
            services.deniedReport().record(DeniedReport.Type.DENIED, authority, Reason.ADDRESS_NOT_ALLOWED.label(),
                    record.client());
            record.decision("denied", Reason.ADDRESS_NOT_ALLOWED.label(), "-");
            log.warn("refused {} for {}: {}", authority, record.client(), ue.getMessage());
            status = HttpResponseStatus.FORBIDDEN;
            code = Reason.ADDRESS_NOT_ALLOWED.label();
            text = ue.clientText();
        } else if (cause instanceof UpstreamException ue && ue.parentFailure() != null) {
            // The destination is allowed; the parent proxy failed for it. /denied names the
            // destination (what the client asked for), the answer and the log name the parent too.
            services.metrics().request(request.kind(), request.decision());
            services.deniedReport().record(DeniedReport.Type.UPSTREAM_FAILURE, authority,
                    "parent_" + ue.parentFailure().label(), record.client());
            status = ue.parentFailure().status();
            code = ue.parentFailure().reasonCode();
            text = ue.clientText();
            record.viaParent().upstream(ue.parentAddress()).error(code);
        } else if (cause instanceof UpstreamException ue) {
            services.metrics().request(request.kind(), request.decision());
            services.deniedReport().record(DeniedReport.Type.UPSTREAM_FAILURE, authority, ue.failureCause().label(),
                    record.client());
            status = ue.failureCause().status();
            code = ue.failureCause().reasonCode();
            text = ue.clientText();
            record.error(code);
        } else {
            log.warn("{} {} failed unexpectedly", request.kind().label(), authority, cause);
            services.metrics().request(request.kind(), request.decision());
            status = HttpResponseStatus.BAD_GATEWAY;
            code = "upstream_error";
            text = authority + " could not be reached";
            record.error(code);
        }
        record.status(status.code());
        services.accessLog().log(record);
        return ErrorResponses.response(status, text, code, null);
    }
}
