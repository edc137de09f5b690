package dev.egressproxy.policy;

/** Outcome of a policy check. */
public enum Verdict {
    /** An allowlist entry names the destination. */
    ALLOW("allowed"),
    /** Refused. */
    DENY("denied"),
    /**
     * Let through in {@code allowlist.mode = report} although the allowlist does not name it: the
     * request goes on (the address policy still applies) and is counted and logged as a would-be
     * denial.
     */
    WOULD_DENY("would_deny");

    private final String label;

    Verdict(String label) {
        this.label = label;
    }

    /** Stable name used as the {@code decision} metric label and log field. */
    public String label() {
        return label;
    }
}
