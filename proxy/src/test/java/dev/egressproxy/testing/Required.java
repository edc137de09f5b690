package dev.egressproxy.testing;

import org.junit.jupiter.api.Assertions;
import org.junit.jupiter.api.Assumptions;

/**
 * The one switch between skipping and failing when a test lacks a program it drives (haproxy,
 * squid, go, chromium, htpasswd, openssl, ip, iptables). On a developer's machine a missing
 * program skips the test with a message that names the package. In CI ({@code CI=true} in the
 * environment, which {@code .ci/run} exports and CI runners set) {@code scripts/install-test-deps.sh}
 * has just installed every one of them, so a missing program means a broken install step: the test
 * fails, instead of the build passing green with a few skips nobody reads.
 *
 * <p>Only for programs. A machine that cannot do something at all (no IPv6 loopback, no io_uring,
 * no Docker engine, which CI does not have either) still skips everywhere.
 */
public final class Required {

    private Required() {
    }

    /** Whether this is a CI run: {@code CI=true}, as GitHub Actions, GitLab and {@code .ci/run} set it. */
    public static boolean inCi() {
        return "true".equalsIgnoreCase(System.getenv("CI"));
    }

    /**
     * Goes on if {@code present}; otherwise skips the test, or fails it in CI. {@code missing}
     * says what is missing and which package installs it.
     */
    public static void program(boolean present, String missing) {
        program(present, missing, inCi());
    }

    static void program(boolean present, String missing, boolean ci) {
        if (present) {
            return;
        }
        if (ci) {
            Assertions.fail(inCiMessage(missing));
        }
        Assumptions.abort(missing);
    }

    /**
     * For a test that can go on without the program, with a stand-in (a library instead of the real
     * tool): returns {@code present}; when it is false, fails the test in CI, and elsewhere prints
     * {@code missing} once so that the stand-in does not pass unnoticed.
     */
    public static boolean programOrStandIn(boolean present, String missing) {
        return programOrStandIn(present, missing, inCi());
    }

    static boolean programOrStandIn(boolean present, String missing, boolean ci) {
        if (present) {
            return true;
        }
        if (ci) {
            Assertions.fail(inCiMessage(missing));
        }
        System.out.println("NOTE: " + missing + "; using a stand-in");
        return false;
    }

    private static String inCiMessage(String missing) {
        return missing + ". CI=true, so a missing program fails the test instead of skipping it:"
                + " scripts/install-test-deps.sh should have installed it";
    }
}
