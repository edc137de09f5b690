package dev.egressproxy.policy;

/** Outcome of a policy check. */
public enum Verdict {
    ALLOW("allowed"),
    DENY("denied");

    private final String label;

    Verdict(String label) {
        this.label = label;
    }

    /** Stable name used as the {@code decision} metric label and log field. */
    public String label() {
        return label;
    }
}
