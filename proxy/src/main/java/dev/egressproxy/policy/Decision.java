package dev.egressproxy.policy;

import java.util.Objects;

/**
 * The result of checking one destination: a verdict, the reason for it and the allowlist rule
 * that matched ({@code "-"} when none did).
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

    public boolean allowed() {
        return verdict == Verdict.ALLOW;
    }
}
