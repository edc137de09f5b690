package dev.egressproxy.log;

import dev.egressproxy.config.ProxyConfig.AccessLogFormat;
import dev.egressproxy.policy.AddressText;
import java.io.StringWriter;
import java.nio.charset.StandardCharsets;
import java.util.Locale;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import tools.jackson.core.JsonGenerator;
import tools.jackson.core.ObjectWriteContext;
import tools.jackson.core.SerializableString;
import tools.jackson.core.io.CharacterEscapes;
import tools.jackson.core.json.JsonFactory;

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

    /**
     * The JSON format's writer: jackson-core's streaming generator, escaping control characters
     * and DEL so that a value can never break the one-object-per-line framing.
     */
    private static final JsonFactory JSON = JsonFactory.builder().characterEscapes(new ControlEscapes()).build();

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
                .append(" client=").append(r.client);
        if (!r.identity.isEmpty()) {
            sb.append(" identity=");
            for (int i = 0; i < r.identity.size(); i++) {
                appendTextToken(sb.append(i == 0 ? "" : ","), r.identity.get(i));
            }
        }
        sb.append(" user=").append(r.user).append(" method=").append(r.method).append(" target=").append(r.target);
        if (!"-".equals(r.url)) {
            sb.append(" url=").append(r.url);
        }
        sb.append(" decision=").append(r.decision)
                .append(" reason=").append(r.reason)
                .append(" rule=").append(r.rule);
        if (!"-".equals(r.policy)) {
            sb.append(" policy=").append(r.policy);
        }
        sb.append(" status=").append(r.status)
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
        StringWriter out = new StringWriter(320);
        try (JsonGenerator g = JSON.createGenerator(ObjectWriteContext.empty(), out)) {
            g.writeStartObject();
            g.writeStringProperty("ts", Timestamps.iso(r.startMillis));
            g.writeStringProperty("id", r.id);
            g.writeStringProperty("client", r.client);
            if (!r.identity.isEmpty()) {
                g.writeArrayPropertyStart("identity");
                for (String id : r.identity) {
                    g.writeString(id);
                }
                g.writeEndArray();
            }
            g.writeStringProperty("user", r.user);
            g.writeStringProperty("method", r.method);
            g.writeStringProperty("target", r.target);
            optional(g, "url", r.url);
            g.writeStringProperty("decision", r.decision);
            g.writeStringProperty("reason", r.reason);
            g.writeStringProperty("rule", r.rule);
            optional(g, "policy", r.policy);
            g.writeNumberProperty("status", r.status);
            g.writeStringProperty("upstream", r.upstream);
            optional(g, "via", r.via);
            g.writeStringProperty("error", r.error);
            if (!"-".equals(r.sniCheck)) {
                g.writeStringProperty("sni", r.sni);
                g.writeStringProperty("sni_check", r.sniCheck);
            }
            g.writeNumberProperty("bytes_up", r.bytesUp);
            g.writeNumberProperty("bytes_down", r.bytesDown);
            g.writeNumberProperty("duration_ms", durationMs);
            optional(g, "end", r.end);
            g.writeEndObject();
        }
        return out.toString();
    }

    /** A field the line leaves out when it does not apply ("-"). */
    private static void optional(JsonGenerator g, String name, String value) {
        if (!"-".equals(value)) {
            g.writeStringProperty(name, value);
        }
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
        return String.format(Locale.ROOT, "%d.%03d %6d %s %s/%03d %d %s %s %s %s -",
                r.startMillis / 1000, r.startMillis % 1000, durationMs, AddressText.hostOf(r.client), code, r.status,
                r.bytesDown, r.method, url, r.user, hierarchy);
    }

    /**
     * Appends a certificate identity to a text line: a subject CN may hold spaces, commas and any
     * Unicode, so a space, comma, '%', '"', a control character and every non-ASCII byte are
     * percent-encoded (UTF-8), which keeps the field one token and the list comma-separated.
     */
    static StringBuilder appendTextToken(StringBuilder sb, String value) {
        for (byte b : value.getBytes(StandardCharsets.UTF_8)) {
            int c = b & 0xff;
            if (c <= 0x20 || c >= 0x7f || c == ',' || c == '%' || c == '"') {
                sb.append('%').append(Character.toUpperCase(Character.forDigit(c >> 4, 16)))
                        .append(Character.toUpperCase(Character.forDigit(c & 0xf, 16)));
            } else {
                sb.append((char) c);
            }
        }
        return sb;
    }

    /** JSON's standard escapes (quote, backslash, below 0x20) plus DEL. */
    private static final class ControlEscapes extends CharacterEscapes {

        private static final int[] ASCII = standardAsciiEscapesForJSON();

        static {
            ASCII[0x7f] = ESCAPE_STANDARD;
        }

        @Override
        public int[] getEscapeCodesForAscii() {
            return ASCII;
        }

        @Override
        public SerializableString getEscapeSequence(int ch) {
            return null;
        }
    }
}
