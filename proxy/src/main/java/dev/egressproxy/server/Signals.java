package dev.egressproxy.server;

import org.slf4j.LoggerFactory;
import sun.misc.Signal;

/**
 * POSIX signal handlers (SIGHUP reloads, SIGTERM and SIGINT drain). Uses the JDK's
 * {@code sun.misc.Signal}, the only way to handle SIGHUP on the JVM; where a signal cannot be
 * handled (another platform, or the JVM reserves it) this logs and carries on.
 */
public final class Signals {

    private Signals() {
    }

    /** Runs {@code action} on the JVM's signal thread each time {@code name} (e.g. "HUP") arrives. */
    public static void on(String name, Runnable action) {
        try {
            Signal.handle(new Signal(name), s -> action.run());
        } catch (IllegalArgumentException e) {
            LoggerFactory.getLogger(Signals.class).warn("cannot handle SIG{} here: {}", name, e.getMessage());
        }
    }
}
