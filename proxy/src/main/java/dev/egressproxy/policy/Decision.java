package dev.egressproxy.policy;

import java.util.Objects;

/**
 * The result of checking one destination: a verdict, the reason for it and the allowlist rule
 * that matched ({@code "-"} when none did). A {@link Verdict#WOULD_DENY} carries the refusal
 * reason that enforcing would have given.
 */
public record Decision(Verdict verdict, Reason reason, String rule) {

    public Decision {
        Objects.requireNonNull(verdict, "verdict");
        Objects.requireNonNull(reason, "reason");
        rule = rule == null || rule.isEmpty() ? "-" : rule;
    }

    public static Decision allow(Reason reason, String rule) {
        return new Decision(Verdict.ALLOW, reason, rule);
    }

    public static Decision deny(Reason reason) {
        return new Decision(Verdict.DENY, reason, "-");
    }

    /**
     * A refusal the allowlist would make, let through by report mode; {@code reason} says what
     * enforcing would have refused it for.
     */
    public static Decision wouldDeny(Reason reason) {
        return new Decision(Verdict.WOULD_DENY, reason, "-");
    }

    /** Whether an allowlist entry names the destination. */
    public boolean allowed() {
        return verdict == Verdict.ALLOW;
    }

    /** Whether the request is refused here; false for {@link Verdict#ALLOW} and {@link Verdict#WOULD_DENY}. */
    public boolean refused() {
        return verdict == Verdict.DENY;
    }
}
