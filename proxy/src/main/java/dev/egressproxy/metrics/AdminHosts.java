package dev.egressproxy.metrics;

import dev.egressproxy.policy.AuthorityParser;
import dev.egressproxy.policy.MalformedTargetException;
import dev.egressproxy.policy.Target;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;

/**
 * The names the admin listener answers to ({@code admin.hosts}): the defence against DNS rebinding.
 * A web page a browser on the monitoring network loads from {@code evil.example} can re-point that
 * name at the proxy's admin address and then read {@code /denied} or {@code /metrics} as a page of
 * its own origin; the request then carries {@code Host: evil.example}, which is none of the
 * proxy's names. So a request is answered when its {@code Host} (the port left aside) is:
 * absent (HTTP/1.0 tools), an IP address literal, {@code localhost}, this machine's host name as
 * the kernel reports it, or one of {@code admin.hosts}: a name, {@code *.}name for any name under
 * it, or {@code *} for any name at all (the check off).
 */
public final class AdminHosts {

    private AdminHosts() {
    }

    /**
     * This machine's host name in lower case (the kernel's, {@code /proc/sys/kernel/hostname}: no
     * DNS lookup), or null where it cannot be read.
     */
    public static String machineName() {
        try {
            String name = Files.readString(Path.of("/proc/sys/kernel/hostname"), StandardCharsets.US_ASCII).trim();
            return name.isEmpty() ? null : name.toLowerCase(Locale.ROOT);
        } catch (IOException | RuntimeException e) {
            return null;
        }
    }

    /**
     * Whether a request with the {@code Host} header {@code host} (null when it has none) is
     * answered, with {@code names} the entries of {@code admin.hosts} (lower case, without a
     * trailing dot, as the configuration holds them) and {@code machine} this machine's name (or
     * null). The header is read by the parser the proxy reads destinations with: a malformed one
     * is no name of the listener's.
     */
    public static boolean accepts(String host, List<String> names, String machine) {
        if (host == null || host.isBlank()) {
            return true;
        }
        Target t;
        try {
            t = AuthorityParser.parseAuthority(host.trim(), 80);
        } catch (MalformedTargetException e) {
            return false;
        }
        String h = t.host();
        if (t.isIpLiteral() || h.equals("localhost") || h.equals(machine)) {
            return true;
        }
        for (String e : names) {
            if (e.equals("*") || e.equals(h) || (e.startsWith("*.") && h.endsWith(e.substring(1)))) {
                return true;
            }
        }
        return false;
    }
}
