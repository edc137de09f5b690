package dev.egressproxy.metrics;

import dev.egressproxy.log.AccessLog;
import dev.egressproxy.policy.AddressText;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The recently refused and recently failing destinations, served as JSON on {@code /denied}: what
 * an operator opens to learn which firewall or allowlist rule is missing. Unlike the metrics it
 * keeps the port and the last client, and it is bounded by entry count ({@code
 * metrics.denied-report-size}), evicting the least recently seen entry.
 */
public final class DeniedReport {

    /** What kind of gap an entry records. */
    public enum Type {
        /** The proxy refused the destination (allowlist or address policy). */
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

    /** One destination's tally. */
    public record Entry(Type type, String destination, String reason, long count, Instant firstSeen,
            Instant lastSeen, String lastClient) {
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

    /** Counts one occurrence. {@code destination} is a validated {@code host:port}. */
    public synchronized void record(Type type, String destination, String reason, String client) {
        String key = type.label() + ' ' + destination + ' ' + reason;
        Instant now = Instant.now();
        Entry old = entries.get(key);
        entries.put(key, old == null
                ? new Entry(type, destination, reason, 1, now, now, client)
                : new Entry(type, destination, reason, old.count() + 1, old.firstSeen(), now, client));
    }

    /** The entries, most recently seen first. */
    public synchronized List<Entry> snapshot() {
        List<Entry> list = new ArrayList<>(entries.values());
        list.sort(Comparator.comparing(Entry::lastSeen).reversed());
        return list;
    }

    /** The report as a JSON document. */
    public String toJson() {
        List<Entry> list = snapshot();
        StringBuilder sb = new StringBuilder(128 + list.size() * 160);
        sb.append("{\"capacity\":").append(capacity).append(",\"entries\":[");
        for (int i = 0; i < list.size(); i++) {
            Entry e = list.get(i);
            if (i > 0) {
                sb.append(',');
            }
            sb.append("\n  {\"type\":");
            AccessLog.appendJsonString(sb, e.type().label());
            sb.append(",\"destination\":");
            AccessLog.appendJsonString(sb, e.destination());
            String destination = e.destination();
            int colon = destination.lastIndexOf(':');
            sb.append(",\"host\":");
            // The host as the metrics' host label has it: an IPv6 address without brackets.
            AccessLog.appendJsonString(sb, AddressText.hostOf(destination));
            sb.append(",\"port\":").append(colon > 0 ? destination.substring(colon + 1) : "null");
            sb.append(",\"reason\":");
            AccessLog.appendJsonString(sb, e.reason());
            sb.append(",\"count\":").append(e.count());
            sb.append(",\"first_seen\":");
            AccessLog.appendJsonString(sb, e.firstSeen().toString());
            sb.append(",\"last_seen\":");
            AccessLog.appendJsonString(sb, e.lastSeen().toString());
            sb.append(",\"last_client\":");
            AccessLog.appendJsonString(sb, e.lastClient());
            sb.append('}');
        }
        return sb.append(list.isEmpty() ? "]}\n" : "\n]}\n").toString();
    }
}
