package dev.egressproxy.check;

import dev.egressproxy.config.ConfigException;
import dev.egressproxy.config.ConfigLoader;
import dev.egressproxy.config.ProxyConfig;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * {@code egress-proxy check hosts|image ...}: the command line of the two checks, with the exit
 * statuses of {@code Main}: 0 all passed (a pull would work), 1 a check failed, 2 the
 * configuration does not load, 64 wrong arguments.
 */
public final class CheckCommand {

    public static final int EXIT_OK = 0;
    public static final int EXIT_FAILED = 1;
    public static final int EXIT_CONFIG = 2;
    public static final int EXIT_USAGE = 64;

    private static final Pattern DURATION = Pattern.compile("(\\d{1,9})\\s*(ms|s|m)");

    private CheckCommand() {
    }

    /**
     * Runs {@code args} (the words after {@code check}).
     *
     * @param config a {@code --config} given before {@code check}, or null
     */
    public static int run(Path config, List<String> args, Map<String, String> env, PrintStream out, PrintStream err) {
        if (args.isEmpty()) {
            usage(err);
            return EXIT_USAGE;
        }
        String verb = args.get(0);
        List<String> rest = args.subList(1, args.size());
        return switch (verb) {
            case "hosts" -> hosts(config, rest, env, out, err);
            case "image" -> image(rest, env, out, err);
            case "--help", "-h", "help" -> {
                usage(out);
                yield EXIT_OK;
            }
            default -> {
                err.println("egress-proxy check: unknown check '" + verb + "'");
                usage(err);
                yield EXIT_USAGE;
            }
        };
    }

    private static int hosts(Path config, List<String> args, Map<String, String> env, PrintStream out, PrintStream err) {
        boolean json = false;
        boolean insecure = false;
        String timeout = null;
        Path caFile = null;
        for (int i = 0; i < args.size(); i++) {
            String a = args.get(i);
            switch (a) {
                case "--json" -> json = true;
                case "--insecure" -> insecure = true;
                case "--config", "-c", "--timeout", "--ca-file" -> {
                    if (i + 1 >= args.size()) {
                        err.println("egress-proxy check hosts: " + a + " needs an argument");
                        return EXIT_USAGE;
                    }
                    String v = args.get(++i);
                    switch (a) {
                        case "--timeout" -> {
                            if (parseDuration(v) == null) {
                                err.println("egress-proxy check hosts: --timeout '" + v + "' is not a duration such as 3s or 500ms");
                                return EXIT_USAGE;
                            }
                            timeout = v.trim();
                        }
                        case "--ca-file" -> caFile = Path.of(v);
                        default -> config = Path.of(v);
                    }
                }
                case "--help", "-h" -> {
                    usage(out);
                    return EXIT_OK;
                }
                default -> {
                    err.println("egress-proxy check hosts: unknown argument '" + a + "'");
                    usage(err);
                    return EXIT_USAGE;
                }
            }
        }
        if (insecure && caFile != null) {
            err.println("egress-proxy check hosts: --insecure and --ca-file exclude each other");
            return EXIT_USAGE;
        }
        if (caFile != null && !Files.isReadable(caFile)) {
            err.println("egress-proxy check hosts: --ca-file " + caFile + " is not a readable file");
            return EXIT_USAGE;
        }
        if (config == null && env.get("EGRESS_PROXY_CONFIG") != null && !env.get("EGRESS_PROXY_CONFIG").isBlank()) {
            config = Path.of(env.get("EGRESS_PROXY_CONFIG"));
        }
        Map<String, String> loadEnv = new HashMap<>(env);
        if (timeout != null) {
            // The connect timeout the check dials with, through the key the proxy itself reads.
            loadEnv.put("EGRESS_PROXY_CONNECT_TIMEOUT", timeout);
        }
        ProxyConfig cfg;
        try {
            cfg = ConfigLoader.load(config, loadEnv);
        } catch (ConfigException e) {
            err.println("egress-proxy: " + e.getMessage());
            return EXIT_CONFIG;
        }
        try {
            HostCheck.Trust trust = insecure ? HostCheck.Trust.insecure()
                    : caFile != null ? HostCheck.Trust.caFile(caFile) : HostCheck.Trust.jdkDefault();
            List<HostResult> results = new HostCheck(cfg, trust).run();
            if (json) {
                CheckJson.hosts(results, config, out);
            } else {
                HostReport.table(results, config, cfg.timeouts().connect(), out);
            }
            return results.stream().anyMatch(r -> r.verdict() == HostResult.Verdict.FAIL) ? EXIT_FAILED : EXIT_OK;
        } catch (Exception e) {
            err.println("egress-proxy check hosts: " + e.getMessage());
            return EXIT_FAILED;
        }
    }

    private static int image(List<String> args, Map<String, String> env, PrintStream out, PrintStream err) {
        String ref = null;
        String proxy = null;
        Path authFile = null;
        Path caFile = null;
        Path proxyCaFile = null;
        String platform = null;
        Duration timeout = Duration.ofSeconds(60);
        boolean json = false;
        for (int i = 0; i < args.size(); i++) {
            String a = args.get(i);
            switch (a) {
                case "--json" -> json = true;
                case "--proxy", "--authfile", "--platform", "--ca-file", "--proxy-cacert", "--timeout" -> {
                    if (i + 1 >= args.size()) {
                        err.println("egress-proxy check image: " + a + " needs an argument");
                        return EXIT_USAGE;
                    }
                    String v = args.get(++i);
                    switch (a) {
                        case "--proxy" -> proxy = v;
                        case "--authfile" -> authFile = Path.of(v);
                        case "--ca-file" -> caFile = Path.of(v);
                        case "--proxy-cacert" -> proxyCaFile = Path.of(v);
                        case "--platform" -> platform = v;
                        default -> {
                            timeout = parseDuration(v);
                            if (timeout == null || timeout.isZero()) {
                                err.println("egress-proxy check image: --timeout '" + v + "' is not a duration such as 30s");
                                return EXIT_USAGE;
                            }
                        }
                    }
                }
                case "--help", "-h" -> {
                    usage(out);
                    return EXIT_OK;
                }
                default -> {
                    if (a.startsWith("-") || ref != null) {
                        err.println("egress-proxy check image: unexpected argument '" + a + "'");
                        usage(err);
                        return EXIT_USAGE;
                    }
                    ref = a;
                }
            }
        }
        if (ref == null) {
            err.println("egress-proxy check image: name the image, e.g. registry.redhat.io/ubi9/ubi-minimal:latest");
            return EXIT_USAGE;
        }
        ImageRef image;
        ProxyAddress proxyAddress;
        try {
            image = ImageRef.parse(ref);
            proxyAddress = ProxyAddress.parse(proxy != null ? proxy : defaultProxy(env));
            if (platform != null && !platform.matches("[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?")) {
                throw new IllegalArgumentException("--platform '" + platform + "' is not os/arch[/variant], e.g. linux/amd64");
            }
            if (authFile != null && !Files.isReadable(authFile)) {
                throw new IllegalArgumentException("--authfile " + authFile + " is not a readable file");
            }
            if (caFile != null && !Files.isReadable(caFile)) {
                throw new IllegalArgumentException("--ca-file " + caFile + " is not a readable file");
            }
            if (proxyCaFile != null && !Files.isReadable(proxyCaFile)) {
                throw new IllegalArgumentException("--proxy-cacert " + proxyCaFile + " is not a readable file");
            }
            if (proxyCaFile != null && !proxyAddress.tls()) {
                throw new IllegalArgumentException("--proxy-cacert is for a proxy that speaks TLS: write it as https://"
                        + proxyAddress.authority());
            }
        } catch (IllegalArgumentException e) {
            err.println("egress-proxy check image: " + e.getMessage());
            return EXIT_USAGE;
        }
        try {
            AuthFile auth = authFile != null ? AuthFile.read(authFile) : AuthFile.none();
            ImageResult result = new ImageCheck(image, proxyAddress, auth, ProxiedHttp.trust(caFile), ProxiedHttp.trust(proxyCaFile),
                    platform, timeout).run();
            if (json) {
                CheckJson.image(result, out);
            } else {
                ImageReport.text(result, out);
            }
            return result.pullWorks() ? EXIT_OK : EXIT_FAILED;
        } catch (Exception e) {
            err.println("egress-proxy check image: " + e.getMessage());
            return EXIT_FAILED;
        }
    }

    /** HTTPS_PROXY (or https_proxy) as a pull through the proxy would use it, else the proxy's default listener. */
    static String defaultProxy(Map<String, String> env) {
        for (String name : List.of("HTTPS_PROXY", "https_proxy")) {
            String v = env.get(name);
            if (v != null && !v.isBlank()) {
                return v.trim();
            }
        }
        return "http://127.0.0.1:3128";
    }

    /** {@code 3s}, {@code 500ms} or {@code 2m} (the unit is required); null when not one of those. */
    static Duration parseDuration(String text) {
        Matcher m = DURATION.matcher(text.trim().toLowerCase(Locale.ROOT));
        if (!m.matches()) {
            return null;
        }
        long n = Long.parseLong(m.group(1));
        return switch (m.group(2)) {
            case "ms" -> Duration.ofMillis(n);
            case "m" -> Duration.ofMinutes(n);
            default -> Duration.ofSeconds(n);
        };
    }

    public static void usage(PrintStream s) {
        s.println("usage: egress-proxy check hosts [--config FILE] [--json] [--timeout D] [--ca-file PEM | --insecure]");
        s.println("       egress-proxy check image REF [--proxy URL] [--proxy-cacert PEM] [--authfile FILE] [--platform OS/ARCH]");
        s.println("                                    [--ca-file PEM] [--timeout D] [--json]");
        s.println("  hosts  from this machine, resolve, connect to and (TLS ports) handshake with every allowlisted host,");
        s.println("         as the proxy would dial it (its DNS, connect-to, address policy and connect timeout)");
        s.println("  image  walk a registry pull of REF through a running egress-proxy (--proxy, else HTTPS_PROXY,");
        s.println("         else http://127.0.0.1:3128) without downloading a blob, and name every host it needs;");
        s.println("         URL: http://host:port, or https://host:port for a TLS proxy port (its CA: --proxy-cacert,");
        s.println("         else the JDK's trust store), with USER:PASSWORD@ for a proxy that wants a login;");
        s.println("         --authfile: a containers auth.json (its \"auth\" entries; no credential helpers);");
        s.println("         --platform: only that platform's manifest of a list (default: every platform);");
        s.println("         --ca-file: the CAs of the registry and CDN certificates (default: the JDK's trust store)");
        s.println("exit status: 0 all passed, 1 a check failed, 2 the configuration does not load, 64 wrong arguments");
    }
}
