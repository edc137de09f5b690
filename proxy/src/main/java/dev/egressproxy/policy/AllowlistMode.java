package dev.egressproxy.policy;

import java.util.Locale;

/**
 * {@code allowlist.mode}: whether a destination the allowlist does not name is refused
 * ({@code enforce}) or let through and reported as a would-be denial ({@code report}). Report mode
 * relaxes only the refusals an allowlist entry would fix ({@link Reason#reportable()}); the
 * address policy and every other check still apply.
 */
public enum AllowlistMode {
    ENFORCE, REPORT;

    /** The value as written in the configuration. */
    public String label() {
        return name().toLowerCase(Locale.ROOT);
    }
}
