package dev.egressproxy.log;

import dev.egressproxy.config.ProxyConfig.AccessLogFormat;
import dev.egressproxy.policy.AddressText;
import java.time.Instant;
import java.util.Locale;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Writes one line per request or tunnel to the {@value #LOGGER} logger, so operators can route it
 * on its own (see BuiltInLogging). Three formats: {@code text} (key=value, the default), {@code json}
 * (one object per line, for log shippers) and {@code squid} (Squid's native access.log layout, so
 * existing Squid log tooling keeps working). Allowed exchanges log at INFO, refused or failed ones
 * at WARN.
 */
public final class AccessLog {

    public static final String LOGGER = "egress-proxy.access";

    private static final Logger log = LoggerFactory.getLogger(LOGGER);

    private final AccessLogFormat format;

    public AccessLog(AccessLogFormat format) {
        this.format = format;
    }

    /** Writes the record once; later calls for the same record do nothing. */
    public void log(AccessRecord r) {
        if (!r.markLogged()) {
            return;
        }
        long durationMs = (System.nanoTime() - r.startNanos) / 1_000_000;
        String line = switch (format) {
            case TEXT -> text(r, durationMs);
            case JSON -> json(r, durationMs);
            case SQUID -> squid(r, durationMs);
        };
        if ("allowed".equals(r.decision) && r.status < 400 && !r.sniProblem()) {
            log.info(line);
        } else {
            log.warn(line);
        }
    }

    static String text(AccessRecord r, long durationMs) {
        StringBuilder sb = new StringBuilder(192)
                .append("id=").append(r.id)
                .append(" client=").append(r.client)
                .append(" method=").append(r.method)
                .append(" target=").append(r.target);
        if (!"-".equals(r.url)) {
            sb.append(" url=").append(r.url);
        }
        sb.append(" decision=").append(r.decision)
                .append(" reason=").append(r.reason)
                .append(" rule=").append(r.rule)
                .append(" status=").append(r.status)
                .append(" upstream=").append(r.upstream);
        if (!"-".equals(r.via)) {
            sb.append(" via=").append(r.via);
        }
        sb.append(" error=").append(r.error);
        if (!"-".equals(r.sniCheck)) {
            sb.append(" sni=").append(r.sni).append(" sni_check=").append(r.sniCheck);
        }
        return sb.append(" bytes_up=").append(r.bytesUp)
                .append(" bytes_down=").append(r.bytesDown)
                .append(" duration_ms=").append(durationMs)
                .append("-".equals(r.end) ? "" : " end=" + r.end)
                .toString();
    }

    static String json(AccessRecord r, long durationMs) {
        StringBuilder sb = new StringBuilder(256).append('{');
        field(sb, "ts", Instant.ofEpochMilli(r.startMillis).toString()).append(',');
        field(sb, "id", r.id).append(',');
        field(sb, "client", r.client).append(',');
        field(sb, "method", r.method).append(',');
        field(sb, "target", r.target).append(',');
        if (!"-".equals(r.url)) {
            field(sb, "url", r.url).append(',');
        }
        field(sb, "decision", r.decision).append(',');
        field(sb, "reason", r.reason).append(',');
        field(sb, "rule", r.rule).append(',');
        sb.append("\"status\":").append(r.status).append(',');
        field(sb, "upstream", r.upstream).append(',');
        if (!"-".equals(r.via)) {
            field(sb, "via", r.via).append(',');
        }
        field(sb, "error", r.error).append(',');
        if (!"-".equals(r.sniCheck)) {
            field(sb, "sni", r.sni).append(',');
            field(sb, "sni_check", r.sniCheck).append(',');
        }
        sb.append("\"bytes_up\":").append(r.bytesUp).append(',');
        sb.append("\"bytes_down\":").append(r.bytesDown).append(',');
        sb.append("\"duration_ms\":").append(durationMs);
        if (!"-".equals(r.end)) {
            sb.append(',');
            field(sb, "end", r.end);
        }
        return sb.append('}').toString();
    }

    /**
     * Squid's native format: {@code time elapsed client code/status bytes method url user
     * hierarchy/peer type}, time in seconds with milliseconds, elapsed in milliseconds.
     */
    static String squid(AccessRecord r, long durationMs) {
        String code;
        if ("denied".equals(r.decision) || r.sniRefused()) {
            // A tunnel the SNI check closed: refused after its 200, as Squid logs an SslBump terminate.
            code = "TCP_DENIED";
        } else if ("-".equals(r.decision)) {
            code = "NONE_NONE";
        } else if ("CONNECT".equals(r.method)) {
            // An aborted tunnel is TCP_TUNNEL_ABORTED, one closed as idle TCP_TUNNEL_TIMEDOUT.
            code = r.squidCode != null ? r.squidCode : "TCP_TUNNEL";
        } else {
            code = "TCP_MISS";
        }
        // Squid's own code for a request its parent (cache_peer) carried.
        String hierarchy = "-".equals(r.upstream) ? "HIER_NONE/-"
                : ("parent".equals(r.via) ? "FIRSTUP_PARENT/" : "HIER_DIRECT/") + AddressText.hostOf(r.upstream);
        String url = "CONNECT".equals(r.method) || "-".equals(r.url) ? r.target : r.url;
        return String.format(Locale.ROOT, "%d.%03d %6d %s %s/%03d %d %s %s - %s -",
                r.startMillis / 1000, r.startMillis % 1000, durationMs, AddressText.hostOf(r.client), code, r.status,
                r.bytesDown, r.method, url, hierarchy);
    }

    private static StringBuilder field(StringBuilder sb, String name, String value) {
        sb.append('"').append(name).append("\":");
        return appendJsonString(sb, value);
    }

    /** Appends {@code value} as a JSON string literal. */
    public static StringBuilder appendJsonString(StringBuilder sb, String value) {
        sb.append('"');
        for (int i = 0; i < value.length(); i++) {
            char c = value.charAt(i);
            switch (c) {
                case '"' -> sb.append("\\\"");
                case '\\' -> sb.append("\\\\");
                case '\n' -> sb.append("\\n");
                case '\r' -> sb.append("\\r");
                case '\t' -> sb.append("\\t");
                default -> {
                    if (c < 0x20 || c == 0x7f) {
                        sb.append(String.format("\\u%04x", (int) c));
                    } else {
                        sb.append(c);
                    }
                }
            }
        }
        return sb.append('"');
    }
}
