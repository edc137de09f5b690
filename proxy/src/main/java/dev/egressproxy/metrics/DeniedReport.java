package dev.egressproxy.metrics;

import dev.egressproxy.policy.AddressText;
import java.io.StringWriter;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import dev.egressproxy.config.ProxyConfig;
import tools.jackson.core.JsonGenerator;
import tools.jackson.core.ObjectWriteContext;
import tools.jackson.core.PrettyPrinter;
import tools.jackson.core.io.JsonStringEncoder;
import tools.jackson.core.json.JsonFactory;
import tools.jackson.core.util.MinimalPrettyPrinter;

/**
 * The recently refused, would-be refused and failing destinations, served on {@code /denied}: what
 * an operator opens to learn which firewall or allowlist rule is missing. Unlike the metrics it
 * keeps the port and the last client, and it is bounded by entry count ({@code
 * metrics.denied-report-size}), evicting the least recently seen entry.
 *
 * <p>Two renderings: JSON ({@link #toJson()}, written with Jackson's streaming generator) and the
 * allowlist entries that would admit the refused and would-be refused destinations, as HOCON lines
 * ready to paste into {@code allowlist.hosts} ({@link #toHocon()}).
 */
public final class DeniedReport {

    private static final JsonFactory JSON = JsonFactory.builder().build();

    /** What kind of gap an entry records. */
    public enum Type {
        /** The proxy refused the destination (allowlist or address policy), or report mode would have. */
        DENIED("denied"),
        /** The destination is allowed but could not be reached. */
        UPSTREAM_FAILURE("upstream_failure");

        private final String label;

        Type(String label) {
            this.label = label;
        }

        public String label() {
            return label;
        }
    }

    /**
     * One destination's tally.
     *
     * @param enforced false for a would-be denial that {@code allowlist.mode = report} let through
     * @param entry the allowlist entry that would admit the destination (the refusal hint's), or null
     *     when no entry would (address policy, upstream failures)
     * @param policy the policy whose allowlist refused it ({@code default}: the top-level allowlist), or
     *     null for what no allowlist decided (address policy, upstream failures)
     */
    public record Entry(Type type, boolean enforced, String destination, String reason, String entry, String policy,
            long count, Instant firstSeen, Instant lastSeen, String lastClient) {
    }

    private final int capacity;
    private final LinkedHashMap<String, Entry> entries;

    public DeniedReport(int capacity) {
        this.capacity = capacity;
        this.entries = new LinkedHashMap<>(16, 0.75f, true) {
            private static final long serialVersionUID = 1L;

            @Override
            protected boolean removeEldestEntry(Map.Entry<String, Entry> eldest) {
                return size() > DeniedReport.this.capacity;
            }
        };
    }

    /** Counts one enforced refusal or upstream failure that no allowlist entry would fix. */
    public void record(Type type, String destination, String reason, String client) {
        record(type, true, destination, reason, null, null, client);
    }

    /**
     * Counts one occurrence. {@code destination} is a validated {@code host:port}; {@code entry}, when
     * not null, the allowlist entry that admits it ({@code AllowlistEntry.covering}); {@code policy}
     * the policy whose allowlist decided, or null.
     */
    public synchronized void record(Type type, boolean enforced, String destination, String reason, String entry,
            String policy, String client) {
        String key = type.label() + ' ' + enforced + ' ' + destination + ' ' + reason + ' ' + entry + ' ' + policy;
        Instant now = Instant.now();
        Entry old = entries.get(key);
        entries.put(key, old == null
                ? new Entry(type, enforced, destination, reason, entry, policy, 1, now, now, client)
                : new Entry(type, enforced, destination, reason, entry, policy, old.count() + 1, old.firstSeen(), now,
                        client));
    }

    /** The entries, most recently seen first. */
    public synchronized List<Entry> snapshot() {
        List<Entry> list = new ArrayList<>(entries.values());
        list.sort(Comparator.comparing(Entry::lastSeen).reversed());
        return list;
    }

    /**
     * The report as a JSON document, one entry per line. {@code enforced} appears on {@code denied}
     * entries, {@code entry} where an allowlist entry would admit the destination.
     */
    public String toJson() {
        List<Entry> list = snapshot();
        StringWriter out = new StringWriter(128 + list.size() * 200);
        try (JsonGenerator g = JSON.createGenerator(new LayoutContext(), out)) {
            g.writeStartObject();
            g.writeNumberProperty("capacity", capacity);
            g.writeArrayPropertyStart("entries");
            for (Entry e : list) {
                g.writeStartObject();
                g.writeStringProperty("type", e.type().label());
                writeDestination(g, e.destination());
                g.writeStringProperty("reason", e.reason());
                if (e.type() == Type.DENIED) {
                    g.writeBooleanProperty("enforced", e.enforced());
                }
                if (e.entry() != null) {
                    g.writeStringProperty("entry", e.entry());
                }
                if (e.policy() != null) {
                    g.writeStringProperty("policy", e.policy());
                }
                writeSightings(g, e);
                g.writeEndObject();
            }
            g.writeEndArray();
            g.writeEndObject();
        }
        return out.append('\n').toString();
    }

    /**
     * The allowlist entries that would admit the refused and would-be refused destinations, sorted,
     * one quoted HOCON string per line under a comment with its count, last sighting and reasons:
     * lines to paste (after review) between the brackets of {@code egress-proxy.allowlist.hosts}.
     * Destinations the address policy refused are listed as comments only, since no entry admits them.
     */
    public String toHocon() {
        List<Entry> all = snapshot();
        Set<String> addressRefused = new HashSet<>();
        for (Entry e : all) {
            if (e.type() == Type.DENIED && e.entry() == null) {
                addressRefused.add(e.destination());
            }
        }
        // Per policy (default first), per entry.
        TreeMap<String, TreeMap<String, Gap>> byPolicy = new TreeMap<>(Comparator
                .comparing((String p) -> !p.equals(ProxyConfig.DEFAULT_POLICY)).thenComparing(Comparator.naturalOrder()));
        List<Entry> unfixable = new ArrayList<>();
        // Newest first: the first sighting of an entry is its last one.
        for (Entry e : all) {
            if (e.type() != Type.DENIED) {
                continue;
            }
            if (e.entry() == null) {
                unfixable.add(e);
                continue;
            }
            String policy = e.policy() == null ? ProxyConfig.DEFAULT_POLICY : e.policy();
            Gap gap = byPolicy.computeIfAbsent(policy, k -> new TreeMap<>())
                    .computeIfAbsent(e.entry(), k -> new Gap(e.lastSeen(), e.lastClient()));
            gap.count += e.count();
            gap.why.add((e.enforced() ? "denied " : "would_deny ") + e.reason());
            // Report mode counts a would-be denial before the address check, which may refuse it anyway.
            gap.addressRefused |= addressRefused.contains(e.destination());
        }
        StringBuilder sb = new StringBuilder(256 + all.size() * 120);
        sb.append("# egress-proxy: allowlist entries that would admit the destinations refused (denied) or let\n")
                .append("# through by allowlist.mode = report (would_deny), from the last ").append(capacity)
                .append(" entries of /denied.\n")
                .append("# Review each one, then paste it between the brackets of egress-proxy.allowlist.hosts = [ ].\n");
        if (byPolicy.isEmpty()) {
            sb.append("# (none so far)\n");
        }
        JsonStringEncoder quote = JsonStringEncoder.getInstance();
        for (Map.Entry<String, TreeMap<String, Gap>> p : byPolicy.entrySet()) {
            if (!p.getKey().equals(ProxyConfig.DEFAULT_POLICY)) {
                sb.append("\n# For policy \"").append(comment(p.getKey()))
                        .append("\": paste these into the hosts of its allowlist in egress-proxy.policies, not the top-level one.\n");
            }
            writeGaps(sb, p.getValue(), quote);
        }
        if (!unfixable.isEmpty()) {
            sb.append("\n# Refused by the address policy (private, loopback, link-local or reserved addresses);\n")
                    .append("# no allowlist entry admits these (see destinations.allow-private and connect-to):\n");
            for (Entry e : unfixable) {
                sb.append("#   ").append(comment(e.destination())).append(": ").append(e.count())
                        .append(e.count() == 1 ? " request" : " requests").append(", last seen ").append(e.lastSeen())
                        .append(" (").append(comment(e.reason())).append(")\n");
            }
        }
        return sb.toString();
    }

    /** The sightings of one allowlist entry in {@link #toHocon()}. */
    private static final class Gap {
        final Instant lastSeen;
        final String lastClient;
        final Set<String> why = new TreeSet<>();
        long count;
        boolean addressRefused;

        Gap(Instant lastSeen, String lastClient) {
            this.lastSeen = lastSeen;
            this.lastClient = lastClient;
        }
    }

    /** Text for a comment line: printable ASCII only, so nothing ends the comment. */
    private static String comment(String s) {
        StringBuilder sb = new StringBuilder(s.length());
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            sb.append(c >= 0x20 && c <= 0x7e ? c : '?');
        }
        return sb.toString();
    }

    /** Lays the report out with one entry per line, as a person reading {@code curl} output wants it. */
    private static final class LayoutContext extends ObjectWriteContext.Base {
        private static final PrettyPrinter ONE_ENTRY_PER_LINE = new MinimalPrettyPrinter() {
            private static final long serialVersionUID = 1L;

            @Override
            public void beforeArrayValues(JsonGenerator g) {
                g.writeRaw("\n  ");
            }

            @Override
            public void writeArrayValueSeparator(JsonGenerator g) {
                g.writeRaw(",\n  ");
            }

            @Override
            public void writeEndArray(JsonGenerator g, int values) {
                g.writeRaw(values == 0 ? "]" : "\n]");
            }
        };

        @Override
        public PrettyPrinter getPrettyPrinter() {
            return ONE_ENTRY_PER_LINE;
        }

        @Override
        public boolean hasPrettyPrinter() {
            return true;
        }
    }

    private static void writeGaps(StringBuilder sb, Map<String, Gap> gaps, JsonStringEncoder quote) {
        for (Map.Entry<String, Gap> g : gaps.entrySet()) {
            Gap gap = g.getValue();
            sb.append("\n# ").append(gap.count).append(gap.count == 1 ? " request" : " requests")
                    .append(", last seen ").append(gap.lastSeen)
                    .append(" from ").append(comment(gap.lastClient))
                    .append(" (").append(comment(String.join(", ", gap.why))).append(')')
                    .append(gap.addressRefused ? "; refused by the address policy too: this entry alone will not admit it" : "")
                    .append('\n');
            // A HOCON quoted string is a JSON string.
            sb.append('"');
            quote.quoteAsString(g.getKey(), sb);
            sb.append("\"\n");
        }
    }

    /** An entry's {@code count}, {@code first_seen}, {@code last_seen} and {@code last_client} fields. */
    static void writeSightings(JsonGenerator g, Entry e) {
        g.writeNumberProperty("count", e.count());
        g.writeStringProperty("first_seen", e.firstSeen().toString());
        g.writeStringProperty("last_seen", e.lastSeen().toString());
        g.writeStringProperty("last_client", e.lastClient());
    }

    /**
     * A destination's {@code destination}, {@code host} (as the metrics' host label has it: an IPv6
     * address without brackets) and {@code port} fields, as {@code /denied} and {@code /status} write them.
     */
    static void writeDestination(JsonGenerator g, String destination) {
        g.writeStringProperty("destination", destination);
        g.writeStringProperty("host", AddressText.hostOf(destination));
        int colon = destination.lastIndexOf(':');
        if (colon > 0) {
            g.writeNumberProperty("port", Integer.parseInt(destination.substring(colon + 1)));
        } else {
            g.writeNullProperty("port");
        }
    }
}
