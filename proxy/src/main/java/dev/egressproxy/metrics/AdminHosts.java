package dev.egressproxy.metrics;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.regex.Pattern;

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

    private static final Pattern IPV4 = Pattern.compile("\\d{1,3}(\\.\\d{1,3}){3}");
    private static final Pattern IPV6 = Pattern.compile("\\[[0-9a-f:.]+](:\\d*)?");

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
     * answered, with {@code names} the entries of {@code admin.hosts} and {@code machine} this
     * machine's name (or null).
     */
    public static boolean accepts(String host, List<String> names, String machine) {
        if (host == null || host.isBlank()) {
            return true;
        }
        String h = host.trim().toLowerCase(Locale.ROOT);
        if (h.startsWith("[")) {
            // An IPv6 literal, with or without a port.
            return IPV6.matcher(h).matches();
        }
        int colon = h.lastIndexOf(':');
        if (colon >= 0) {
            h = h.substring(0, colon);
        }
        if (h.endsWith(".")) {
            h = h.substring(0, h.length() - 1);
        }
        if (h.isEmpty()) {
            return false;
        }
        if (IPV4.matcher(h).matches() || h.equals("localhost") || h.equals(machine)) {
            return true;
        }
        for (String entry : names) {
            String e = entry.toLowerCase(Locale.ROOT);
            if (e.equals("*") || e.equals(h) || (e.startsWith("*.") && h.endsWith(e.substring(1)))) {
                return true;
            }
        }
        return false;
    }
}
