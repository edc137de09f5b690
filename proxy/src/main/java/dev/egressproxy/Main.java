package dev.egressproxy;

import dev.egressproxy.check.CheckCommand;
import dev.egressproxy.config.ConfigException;
import dev.egressproxy.config.ConfigLoader;
import dev.egressproxy.config.ProxyConfig;
import dev.egressproxy.log.LoggingSetup;
import dev.egressproxy.metrics.StandardBinders;
import dev.egressproxy.policy.AllowlistEntry;
import dev.egressproxy.server.ConfigReloader;
import dev.egressproxy.server.ProxyServer;
import dev.egressproxy.server.Signals;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Command line entry point.
 *
 * <pre>
 * java -jar egress-proxy.jar [--config FILE]    run (FILE over the shipped defaults; or EGRESS_PROXY_CONFIG)
 * java -jar egress-proxy.jar --check-config FILE  validate FILE, print the allowlist, exit 0 or 2
 * java -jar egress-proxy.jar --version
 * java -jar egress-proxy.jar [--config FILE] check hosts|image ...   see {@link CheckCommand}
 * java -XX:ArchiveClassesAtExit=FILE -jar egress-proxy.jar --cds-training   see {@link ClassDataTraining}
 * java -XX:AOTCacheOutput=FILE -jar egress-proxy.jar --cds-training SECONDS   (JDK 25 and later)
 * </pre>
 */
public final class Main {

    /** Exit status for a configuration that does not load. */
    public static final int EXIT_CONFIG = 2;
    /** Exit status for wrong arguments. */
    public static final int EXIT_USAGE = 64;

    private static final String NETTY_JFR = "io.netty.jfr.enabled";
    private static final Duration JVM_METERS_DELAY = Duration.ofSeconds(3);

    private Main() {
    }

    public static void main(String[] args) throws Exception {
        // Netty 4.2 emits buffer-allocator events to Java Flight Recorder when JFR is available,
        // and the first pooled allocation then registers its event classes with JFR: about a
        // quarter of a second on one core, in the path of the first CONNECT, and 10 MB of RSS
        // (docs/performance.md#start-up). Nobody reads those events unless they ask, so they are
        // off unless -Dio.netty.jfr.enabled=true is given. The JVM's own JFR is unaffected.
        if (System.getProperty(NETTY_JFR) == null) {
            System.setProperty(NETTY_JFR, "false");
        }
        int status = run(args, System.getenv(), System.out, System.err);
        if (status >= 0) {
            System.exit(status);
        }
    }

    /** Runs the command; returns an exit status, or -1 when the proxy is serving until shutdown. */
    static int run(String[] args, Map<String, String> env, PrintStream out, PrintStream err) throws Exception {
        Path config = null;
        boolean check = false;
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--config", "-c", "--check-config" -> {
                    check |= args[i].equals("--check-config");
                    if (i + 1 >= args.length) {
                        err.println(args[i] + " needs a file argument");
                        return EXIT_USAGE;
                    }
                    config = Path.of(args[++i]);
                }
                case "check" -> {
                    return CheckCommand.run(config, Arrays.asList(args).subList(i + 1, args.length), env, out, err);
                }
                case "--version" -> {
                    out.println("egress-proxy " + version());
                    return 0;
                }
                case "--cds-training" -> {
                    if (i + 1 == args.length) {
                        return ClassDataTraining.run(out, err);
                    }
                    if (i + 2 == args.length && args[i + 1].matches("[0-9]{1,3}")) {
                        return ClassDataTraining.run(Duration.ofSeconds(Integer.parseInt(args[i + 1])), out, err);
                    }
                    err.println("--cds-training takes at most one argument, the seconds of load after its rounds");
                    return EXIT_USAGE;
                }
                case "--help", "-h" -> {
                    usage(out);
                    return 0;
                }
                default -> {
                    err.println("unknown argument: " + args[i]);
                    usage(err);
                    return EXIT_USAGE;
                }
            }
        }
        if (config == null && env.get("EGRESS_PROXY_CONFIG") != null && !env.get("EGRESS_PROXY_CONFIG").isBlank()) {
            config = Path.of(env.get("EGRESS_PROXY_CONFIG"));
        }
        ProxyConfig cfg;
        try {
            cfg = ConfigLoader.load(config, env);
        } catch (ConfigException e) {
            err.println("egress-proxy: " + e.getMessage());
            return EXIT_CONFIG;
        }
        if (check) {
            out.println("configuration OK: " + (config == null ? "shipped defaults" : config));
            out.println("listen " + cfg.listen().host() + ":" + cfg.listen().port() + ", admin "
                    + (cfg.admin().enabled() ? cfg.admin().host() + ":" + cfg.admin().port() : "disabled"));
            out.println("allowlist (" + cfg.allowlist().entries().size() + " entries):");
            for (AllowlistEntry e : cfg.allowlist().entries()) {
                out.println("  " + e.text());
            }
            for (ProxyConfig.Policy p : cfg.policies()) {
                out.println("policy " + p.name() + " (clients " + p.clients() + ", users " + p.users() + ", identities "
                        + p.identities() + "; " + p.allowlist().mode().label() + ", " + p.allowlist().entries().size()
                        + " entries):");
                for (AllowlistEntry e : p.allowlist().entries()) {
                    out.println("  " + e.text());
                }
            }
            return 0;
        }
        if (cfg.logging().jsonAppLogs()) {
            LoggingSetup.useJsonApplicationLogs();
        }
        serve(cfg, config, env);
        return -1;
    }

    private static void serve(ProxyConfig cfg, Path file, Map<String, String> env) throws Exception {
        Logger log = LoggerFactory.getLogger(Main.class);
        PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
        // The JVM and process meters are bound a few seconds after start, or at the first scrape
        // if that comes sooner: binding them takes a fifth of a second of one core, which would
        // otherwise delay the first CONNECT (docs/performance.md#start-up).
        StandardBinders binders = StandardBinders.bindLater(registry, JVM_METERS_DELAY);
        // Ready (/readyz 200) only once SIGHUP and the config watcher are in place too.
        ProxyServer server = new ProxyServer(cfg, registry, version()).scrapeWaitsFor(binders::whenBound).holdReadiness();
        try {
            server.start();
        } catch (Exception e) {
            log.error("egress-proxy could not start: {}", e instanceof IOException ? e.getMessage() : e.toString());
            server.close();
            System.exit(1);
        }
        ConfigReloader reloader = new ConfigReloader(file, env, server, server.metrics());
        if (cfg.reload().watch()) {
            reloader.watch();
        }
        Signals.on("HUP", () -> reloader.reloadAsync("SIGHUP"));
        AtomicBoolean stopping = new AtomicBoolean();
        CountDownLatch stopped = new CountDownLatch(1);
        Runnable stop = () -> {
            if (!stopping.compareAndSet(false, true)) {
                log.warn("second stop signal: exiting without waiting for open connections");
                Runtime.getRuntime().halt(0);
            }
            Thread drain = new Thread(() -> {
                try {
                    Duration grace = cfg.shutdown().grace();
                    log.info("egress-proxy stopping: draining {} connections for up to {}s",
                            server.clientChannels().size(), grace.toSeconds());
                    int left = server.drain(grace);
                    if (left > 0) {
                        log.warn("grace period over, closing {} connections still open", left);
                    }
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                } finally {
                    reloader.close();
                    server.close();
                    try {
                        binders.close();
                    } catch (Exception ignored) {
                        // Exiting anyway.
                    }
                    log.info("egress-proxy stopped");
                    stopped.countDown();
                }
            }, "egress-drain");
            drain.start();
        };
        Signals.on("TERM", stop);
        Signals.on("INT", stop);
        server.markReady();
        stopped.await();
        System.exit(0);
    }

    private static void usage(PrintStream s) {
        s.println("usage: egress-proxy [--config FILE] | --check-config FILE | --version | check hosts|image ...");
        s.println("  --config FILE        load FILE over the shipped defaults (also: EGRESS_PROXY_CONFIG)");
        s.println("  --check-config FILE  validate FILE and print the resulting allowlist, then exit");
        s.println("  check hosts          dial every allowlisted host from this machine as the proxy would (check --help)");
        s.println("  check image REF      walk a pull of REF through a running proxy and name the hosts it needs");
        s.println("                       (--proxy http[s]://[user:pass@]host:port, --proxy-cacert, --authfile, --platform;");
        s.println("                       check --help)");
        s.println("  --cds-training [S]   exercise the proxy on loopback and exit (for -XX:ArchiveClassesAtExit);");
        s.println("                       with S, S more seconds of load (for the method profiles of -XX:AOTCacheOutput)");
        s.println("environment overrides: " + String.join(", ", ConfigLoader.ENV_KEYS.keySet()));
    }

    /** The version this jar was built as. */
    public static String version() {
        try (InputStream in = Main.class.getResourceAsStream("/egress-proxy-build.properties")) {
            if (in != null) {
                Properties p = new Properties();
                p.load(in);
                return p.getProperty("version", "unknown");
            }
        } catch (IOException ignored) {
            // Fall through.
        }
        return "unknown";
    }
}
