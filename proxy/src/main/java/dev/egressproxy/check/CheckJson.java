package dev.egressproxy.check;

import java.io.PrintStream;
import java.nio.file.Path;
import java.util.List;
import tools.jackson.core.JsonEncoding;
import tools.jackson.core.JsonGenerator;
import tools.jackson.core.ObjectWriteContext;
import tools.jackson.core.StreamWriteFeature;
import tools.jackson.core.json.JsonFactory;

/** The {@code --json} documents of both checks, written with jackson-core's streaming generator. */
final class CheckJson {

    // Closing a generator must not close System.out.
    private static final JsonFactory FACTORY = JsonFactory.builder().disable(StreamWriteFeature.AUTO_CLOSE_TARGET).build();

    private CheckJson() {
    }

    static void hosts(List<HostResult> results, Path config, PrintStream out) {
        try (JsonGenerator g = FACTORY.createGenerator(ObjectWriteContext.empty(), out, JsonEncoding.UTF8)) {
            g.writeStartObject();
            g.writeStringProperty("config", config == null ? null : config.toString());
            g.writeNumberProperty("passed", count(results, HostResult.Verdict.PASS));
            g.writeNumberProperty("failed", count(results, HostResult.Verdict.FAIL));
            g.writeNumberProperty("skipped", count(results, HostResult.Verdict.SKIP));
            g.writeArrayPropertyStart("hosts");
            for (HostResult r : results) {
                g.writeStartObject();
                g.writeStringProperty("entry", r.entry());
                g.writeStringProperty("host", r.host());
                if (r.host() != null) {
                    g.writeNumberProperty("port", r.port());
                    g.writeStringProperty("via", r.via());
                }
                g.writeArrayPropertyStart("addresses");
                for (String a : r.addresses()) {
                    g.writeString(a);
                }
                g.writeEndArray();
                millis(g, "dns_ms", r.dnsMillis());
                millis(g, "connect_ms", r.connectMillis());
                g.writeStringProperty("connected_to", r.connectedTo());
                if (r.tls() != null) {
                    HostResult.Tls t = r.tls();
                    g.writeObjectPropertyStart("tls");
                    g.writeBooleanProperty("ok", t.ok());
                    g.writeStringProperty("protocol", t.protocol());
                    g.writeStringProperty("subject", t.subject());
                    g.writeStringProperty("issuer", t.issuer());
                    g.writeStringProperty("not_after", t.notAfter() == null ? null : t.notAfter().toString());
                    g.writeStringProperty("error", t.error());
                    g.writeEndObject();
                }
                g.writeStringProperty("verdict", r.verdict().name());
                g.writeStringProperty("reason", r.reason());
                g.writeEndObject();
            }
            g.writeEndArray();
            g.writeEndObject();
        }
        out.println();
        out.flush();
    }

    static void image(ImageResult result, PrintStream out) {
        try (JsonGenerator g = FACTORY.createGenerator(ObjectWriteContext.empty(), out, JsonEncoding.UTF8)) {
            g.writeStartObject();
            g.writeStringProperty("image", result.image());
            g.writeStringProperty("proxy", result.proxy());
            g.writeBooleanProperty("pull_works", result.pullWorks());
            g.writeArrayPropertyStart("needs");
            for (String n : result.needs()) {
                g.writeString(n);
            }
            g.writeEndArray();
            g.writeArrayPropertyStart("hosts");
            for (ImageResult.HostUse h : result.hosts()) {
                g.writeStartObject();
                g.writeStringProperty("host", h.authority());
                g.writeArrayPropertyStart("roles");
                for (String role : h.roles()) {
                    g.writeString(role);
                }
                g.writeEndArray();
                g.writeStringProperty("proxy", h.proxy().label());
                if (h.reasonCode() != null) {
                    g.writeStringProperty("reason_code", h.reasonCode());
                }
                g.writeArrayPropertyStart("statuses");
                for (Integer s : h.statuses()) {
                    g.writeNumber(s);
                }
                g.writeEndArray();
                g.writeNumberProperty("requests", h.requests());
                g.writeStringProperty("detail", h.detail());
                g.writeEndObject();
            }
            g.writeEndArray();
            g.writeArrayPropertyStart("steps");
            for (ImageResult.Step s : result.steps()) {
                g.writeStartObject();
                g.writeStringProperty("what", s.what());
                g.writeBooleanProperty("ok", s.ok());
                g.writeStringProperty("detail", s.detail());
                g.writeEndObject();
            }
            g.writeEndArray();
            g.writeEndObject();
        }
        out.println();
        out.flush();
    }

    private static void millis(JsonGenerator g, String name, long ms) {
        if (ms >= 0) {
            g.writeNumberProperty(name, ms);
        } else {
            g.writeNullProperty(name);
        }
    }

    private static long count(List<HostResult> results, HostResult.Verdict v) {
        return results.stream().filter(r -> r.verdict() == v).count();
    }
}
