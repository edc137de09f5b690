package dev.egressproxy.metrics;

import dev.egressproxy.config.ProxyConfig;
import dev.egressproxy.policy.AddressText;
import dev.egressproxy.policy.AllowlistEntry;
import dev.egressproxy.policy.CidrBlock;
import dev.egressproxy.upstream.FastFail;
import java.io.StringWriter;
import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.time.Instant;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.BooleanSupplier;
import java.util.function.IntSupplier;
import java.util.function.Supplier;
import tools.jackson.core.JsonGenerator;
import tools.jackson.core.ObjectWriteContext;
import tools.jackson.core.PrettyPrinter;
import tools.jackson.core.json.JsonFactory;
import tools.jackson.core.util.DefaultPrettyPrinter;

/**
 * What the proxy is doing now, served as JSON on {@code /status} and shown by the status page on
 * {@code /}: version, uptime, transport, the configuration file and the outcome of its last reload,
 * the allowlist in force (presets expanded, each entry with the preset it came from), open client
 * connections and tunnels, a summary of the refused destinations (the details are {@code /denied})
 * and the allowed destinations that could not be reached recently, with the cause.
 *
 * <p>The reload outcome is recorded here by the {@code ConfigReloader}; everything else is read when
 * the document is rendered, from the configuration in force, the meters and the {@link DeniedReport}.
 * The field names are a public API (docs/operations.md): add fields, never rename or remove one.
 */
public final class StatusReport {

    private static final JsonFactory JSON = JsonFactory.builder().build();

    /**
     * The outcome of one configuration reload.
     *
     * @param trigger what asked for it ({@code "file change"}, {@code "SIGHUP"})
     * @param error why it was refused, or null when the new configuration is in force
     * @param restartNeeded settings that changed but take effect only after a restart
     */
    public record Reload(Instant at, String trigger, String error, List<String> restartNeeded) {
        public Reload {
            restartNeeded = List.copyOf(restartNeeded);
        }

        public boolean applied() {
            return error == null;
        }
    }

    private final String version;
    private final Instant started = Instant.now();
    private final long startedNanos = System.nanoTime();
    private final Supplier<ProxyConfig> config;
    private final ProxyMetrics metrics;
    private final DeniedReport denied;
    private final Supplier<String> transport;
    private final IntSupplier connectionsLimit;
    private final BooleanSupplier ready;
    private final AtomicReference<Reload> lastReload = new AtomicReference<>();
    private final AtomicLong reloadsApplied = new AtomicLong();
    private final AtomicLong reloadsRefused = new AtomicLong();
    private volatile Path configFile;
    private volatile Supplier<List<FastFail.Down>> fastFailing = List::of;

    /**
     * {@code config} gives the configuration in force at each render; {@code transport}, {@code
     * connectionsLimit} and {@code ready} are asked at each render too (they are known only once the
     * proxy has started).
     */
    public StatusReport(String version, Supplier<ProxyConfig> config, ProxyMetrics metrics, DeniedReport denied,
            Supplier<String> transport, IntSupplier connectionsLimit, BooleanSupplier ready) {
        this.version = version;
        this.config = config;
        this.metrics = metrics;
        this.denied = denied;
        this.transport = transport;
        this.connectionsLimit = connectionsLimit;
        this.ready = ready;
    }

    /** The operator's configuration file (absolute), or null for the shipped defaults. */
    public void configFile(Path file) {
        this.configFile = file;
    }

    /** Where the destinations in fast-fail come from (the upstream connector's, once started). */
    public void fastFail(FastFail fastFail) {
        this.fastFailing = fastFail::downDestinations;
    }

    /** Records a reload whose configuration is now in force. */
    public void reloadApplied(String trigger, List<String> restartNeeded) {
        reloadsApplied.incrementAndGet();
        lastReload.set(new Reload(Instant.now(), trigger, null, restartNeeded));
    }

    /** Records a reload that was refused ({@code error} says why); the running configuration stays. */
    public void reloadRefused(String trigger, String error) {
        reloadsRefused.incrementAndGet();
        lastReload.set(new Reload(Instant.now(), trigger, error == null ? "unknown error" : error, List.of()));
    }

    /** The last reload, or null when there has been none since the start. */
    public Reload lastReload() {
        return lastReload.get();
    }

    /** The status as a JSON document (indented, for people reading it with curl too). */
    public String toJson() {
        ProxyConfig cfg = config.get();
        List<DeniedReport.Entry> gaps = denied.snapshot();
        StringWriter out = new StringWriter(2048);
        try (JsonGenerator g = JSON.createGenerator(Indented.CONTEXT, out)) {
            g.writeStartObject();
            g.writeStringProperty("version", version);
            g.writeStringProperty("started", started.toString());
            g.writeNumberProperty("uptime_seconds", TimeUnit.NANOSECONDS.toSeconds(System.nanoTime() - startedNanos));
            // The proxy's clock, so that a reader computes "seen 5 s ago" without trusting its own.
            g.writeStringProperty("now", Instant.now().toString());
            g.writeBooleanProperty("ready", ready.getAsBoolean());
            g.writeStringProperty("transport", transport.get());
            writeConfig(g);
            writeAllowlist(g, cfg.allowlist());
            writePolicies(g, cfg.policies());
            g.writeObjectPropertyStart("connections");
            g.writeNumberProperty("active", metrics.connectionsActive());
            g.writeNumberProperty("limit", connectionsLimit.getAsInt());
            g.writeEndObject();
            g.writeObjectPropertyStart("tunnels");
            g.writeNumberProperty("active", metrics.tunnelsActive());
            g.writeEndObject();
            writeDenied(g, gaps, cfg.metrics().deniedReportSize());
            writeUnreachable(g, gaps);
            writeFastFail(g, cfg.upstream().fastFail(), fastFailing.get());
            g.writeEndObject();
        }
        return out.append('\n').toString();
    }

    private void writeConfig(JsonGenerator g) {
        Path file = configFile;
        g.writeObjectPropertyStart("config");
        if (file == null) {
            g.writeNullProperty("file");
        } else {
            g.writeStringProperty("file", file.toString());
        }
        g.writeObjectPropertyStart("reloads");
        g.writeNumberProperty("success", reloadsApplied.get());
        g.writeNumberProperty("failure", reloadsRefused.get());
        g.writeEndObject();
        Reload last = lastReload.get();
        if (last == null) {
            g.writeNullProperty("last_reload");
        } else {
            g.writeObjectPropertyStart("last_reload");
            g.writeStringProperty("at", last.at().toString());
            g.writeStringProperty("trigger", last.trigger());
            // The values of config_reloads_total's result label.
            g.writeStringProperty("result", last.applied() ? "success" : "failure");
            if (last.error() != null) {
                g.writeStringProperty("error", last.error());
            }
            g.writeArrayPropertyStart("restart_needed");
            for (String key : last.restartNeeded()) {
                g.writeString(key);
            }
            g.writeEndArray();
            g.writeEndObject();
        }
        g.writeEndObject();
    }

    /** {@code policies}: each policy's name, selectors and allowlist, in config order. */
    private static void writePolicies(JsonGenerator g, List<ProxyConfig.Policy> policies) {
        g.writeArrayPropertyStart("policies");
        for (ProxyConfig.Policy p : policies) {
            g.writeStartObject();
            g.writeStringProperty("name", p.name());
            g.writeArrayPropertyStart("clients");
            for (CidrBlock c : p.clients()) {
                g.writeString(c.toString());
            }
            g.writeEndArray();
            writeStrings(g, "users", p.users());
            writeStrings(g, "identities", p.identities());
            writeAllowlistBody(g, p.allowlist());
            g.writeEndObject();
        }
        g.writeEndArray();
    }

    private static void writeStrings(JsonGenerator g, String name, List<String> values) {
        g.writeArrayPropertyStart(name);
        for (String v : values) {
            g.writeString(v);
        }
        g.writeEndArray();
    }

    private static void writeAllowlist(JsonGenerator g, ProxyConfig.Allowlist allowlist) {
        g.writeObjectPropertyStart("allowlist");
        writeAllowlistBody(g, allowlist);
        g.writeEndObject();
    }

    /** An allowlist's {@code mode}, {@code presets} and {@code entries} fields. */
    private static void writeAllowlistBody(JsonGenerator g, ProxyConfig.Allowlist allowlist) {
        g.writeStringProperty("mode", allowlist.mode().label());
        g.writeArrayPropertyStart("presets");
        for (String preset : allowlist.presets()) {
            g.writeString(preset);
        }
        g.writeEndArray();
        g.writeArrayPropertyStart("entries");
        for (AllowlistEntry entry : allowlist.entries()) {
            g.writeStartObject();
            g.writeStringProperty("entry", entry.text());
            String preset = allowlist.presetOf(entry);
            g.writeStringProperty("source", preset == null ? "hosts" : "preset");
            if (preset != null) {
                g.writeStringProperty("preset", preset);
            }
            g.writeEndObject();
        }
        g.writeEndArray();
    }

    private static void writeDenied(JsonGenerator g, List<DeniedReport.Entry> gaps, int capacity) {
        long destinations = 0;
        long requests = 0;
        for (DeniedReport.Entry e : gaps) {
            if (e.type() == DeniedReport.Type.DENIED) {
                destinations++;
                requests += e.count();
            }
        }
        g.writeObjectPropertyStart("denied");
        g.writeNumberProperty("entries", destinations);
        g.writeNumberProperty("requests", requests);
        g.writeNumberProperty("capacity", capacity);
        g.writeStringProperty("details", "/denied");
        g.writeEndObject();
    }

    /** The {@code upstream_failure} entries of the gap report, most recently seen first. */
    private static void writeUnreachable(JsonGenerator g, List<DeniedReport.Entry> gaps) {
        g.writeArrayPropertyStart("unreachable");
        for (DeniedReport.Entry e : gaps) {
            if (e.type() != DeniedReport.Type.UPSTREAM_FAILURE) {
                continue;
            }
            g.writeStartObject();
            DeniedReport.writeDestination(g, e.destination());
            g.writeStringProperty("cause", e.reason());
            DeniedReport.writeSightings(g, e);
            g.writeEndObject();
        }
        g.writeEndArray();
    }

    /** The fast-fail settings in force and the destinations whose every address is skipped now. */
    private static void writeFastFail(JsonGenerator g, ProxyConfig.FastFail settings, List<FastFail.Down> down) {
        g.writeObjectPropertyStart("fast_fail");
        g.writeBooleanProperty("enabled", settings.enabled());
        g.writeNumberProperty("cool_down_seconds", settings.coolDown().toSeconds());
        g.writeArrayPropertyStart("hosts");
        for (FastFail.Down d : down) {
            g.writeStartObject();
            g.writeStringProperty("destination", d.authority());
            g.writeStringProperty("host", d.host());
            g.writeArrayPropertyStart("addresses");
            for (InetSocketAddress a : d.addresses()) {
                g.writeString(AddressText.of(a));
            }
            g.writeEndArray();
            g.writeNumberProperty("timed_out_seconds_ago", TimeUnit.NANOSECONDS.toSeconds(d.sinceTimeoutNanos()));
            g.writeNumberProperty("retry_in_seconds", (d.untilRetryNanos() + 999_999_999L) / 1_000_000_000L);
            g.writeBooleanProperty("trial_running", d.trialRunning());
            g.writeEndObject();
        }
        g.writeEndArray();
        g.writeEndObject();
    }

    /** Two-space indentation. */
    private static final class Indented extends ObjectWriteContext.Base {
        static final Indented CONTEXT = new Indented();

        @Override
        public PrettyPrinter getPrettyPrinter() {
            // Stateful (it counts the nesting): one per document.
            return new DefaultPrettyPrinter();
        }

        @Override
        public boolean hasPrettyPrinter() {
            return true;
        }
    }
}
