package dev.egressproxy.handler;

import dev.egressproxy.config.ConfigSnapshot;
import dev.egressproxy.log.AccessRecord;
import dev.egressproxy.policy.Decision;
import dev.egressproxy.policy.Kind;
import dev.egressproxy.policy.Target;
import io.netty.handler.codec.http.HttpRequest;

/**
 * A request that passed the allowlist, passed from {@link RequestPolicyHandler} to the handler of
 * its kind. {@code pathAndQuery} is the origin-form target to forward (empty for CONNECT);
 * {@code live} is the configuration snapshot it was decided under, and the one it is dialled and
 * checked under.
 */
public record ProxyRequest(Kind kind, HttpRequest request, Target target, String pathAndQuery, Decision decision,
        AccessRecord record, ConfigSnapshot live) {
}
