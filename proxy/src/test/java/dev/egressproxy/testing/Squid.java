package dev.egressproxy.testing;

import static org.awaitility.Awaitility.await;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;

/**
 * A real Squid (Debian's {@code squid}) run in the foreground ({@code squid -N}) as a parent proxy
 * for a test: on a free loopback port, with its config, pid file, logs and hosts file in a
 * directory of its own under the system temp directory (Squid started as root drops to the
 * {@code proxy} user, which cannot enter JUnit's private temp directories; removed on close), optionally with Basic authentication ({@code basic_ncsa_auth} over an
 * htpasswd file made with {@code openssl passwd -apr1}) and a list of destinations it refuses with
 * 403. Names resolve only through its hosts file, so a destination name the test gives it is one
 * the proxy under test cannot resolve. Stopped (and its helpers with it) by {@link #close()}.
 */
public final class Squid implements AutoCloseable {

    private static final Path SQUID = Path.of("/usr/sbin/squid");
    private static final Path NCSA = Path.of("/usr/lib/squid/basic_ncsa_auth");

    private final Path dir;
    private final int port;
    private final Process process;

    /**
     * @param hosts names Squid resolves (its hosts file), to addresses
     * @param user with {@code password}, the only credentials Squid accepts; null: no authentication
     * @param denied destination names Squid answers 403 for
     */
    private Squid(Map<String, String> hosts, String user, String password, List<String> denied)
            throws Exception {
        Required.program(Files.isExecutable(SQUID), "squid is not installed (apt-get install squid)");
        this.dir = Files.createTempDirectory("egress-squid-");
        // Squid drops to the "proxy" user when started as root: it must write its logs here.
        Files.setPosixFilePermissions(dir, PosixFilePermissions.fromString("rwxrwxrwx"));
        Files.writeString(dir.resolve("hosts"), hosts.entrySet().stream()
                .map(e -> e.getValue() + " " + e.getKey()).collect(Collectors.joining("\n", "", "\n")));
        StringBuilder conf = new StringBuilder();
        this.port = Processes.freePort();
        conf.append("http_port 127.0.0.1:").append(port).append('\n')
                .append("visible_hostname parent-squid\n")
                .append("pid_filename ").append(dir.resolve("squid.pid")).append('\n')
                .append("cache_log ").append(dir.resolve("cache.log")).append('\n')
                .append("access_log stdio:").append(dir.resolve("access.log")).append('\n')
                .append("hosts_file ").append(dir.resolve("hosts")).append('\n')
                .append("cache deny all\n")
                .append("strip_query_terms off\n")
                .append("cache_effective_user proxy\n")
                .append("coredump_dir ").append(dir).append('\n')
                .append("shutdown_lifetime 0 seconds\n")
                .append("connect_timeout 5 seconds\n");
        if (!denied.isEmpty()) {
            conf.append("acl refused dstdomain ").append(String.join(" ", denied)).append('\n')
                    .append("http_access deny refused\n");
        }
        if (user != null) {
            Required.program(Files.isExecutable(NCSA), NCSA + " is missing (part of Debian's squid)");
            Processes.Result hash = Processes.run(List.of("openssl", "passwd", "-apr1", "-stdin"), password, 20);
            if (hash.exitCode() != 0) {
                throw new IllegalStateException("openssl passwd failed: " + hash.output());
            }
            Path htpasswd = dir.resolve("htpasswd");
            Files.writeString(htpasswd, user + ":" + hash.output().trim() + "\n");
            Files.setPosixFilePermissions(htpasswd, PosixFilePermissions.fromString("rw-r--r--"));
            conf.append("auth_param basic program ").append(NCSA).append(' ').append(htpasswd).append('\n')
                    .append("acl authenticated proxy_auth REQUIRED\n")
                    .append("http_access allow authenticated\n")
                    .append("http_access deny all\n");
        } else {
            conf.append("http_access allow all\n");
        }
        Path config = dir.resolve("squid.conf");
        Files.writeString(config, conf.toString());
        process = new ProcessBuilder(SQUID.toString(), "-N", "-f", config.toString())
                .redirectErrorStream(true)
                .redirectOutput(dir.resolve("squid.out").toFile())
                .start();
        try {
            await().atMost(Duration.ofSeconds(30)).pollInterval(Duration.ofMillis(50)).until(() -> {
                if (!process.isAlive()) {
                    throw new IllegalStateException("squid exited with " + process.exitValue() + ": " + output());
                }
                try (Socket s = new Socket()) {
                    s.connect(new InetSocketAddress("127.0.0.1", port), 500);
                    return true;
                } catch (IOException e) {
                    return false;
                }
            });
        } catch (RuntimeException e) {
            close();
            throw e;
        }
    }

    /** A Squid that lets everyone through, but refuses {@code denied} with 403. */
    public static Squid open(Map<String, String> hosts, String... denied) throws Exception {
        return new Squid(hosts, null, null, List.of(denied));
    }

    /** A Squid that wants Basic credentials {@code user}:{@code password} (407 otherwise). */
    public static Squid withAuth(Map<String, String> hosts, String user, String password) throws Exception {
        return new Squid(hosts, user, password, List.of());
    }

    public int port() {
        return port;
    }

    /** {@code http://127.0.0.1:port}. */
    public String url() {
        return "http://127.0.0.1:" + port;
    }

    /** The lines of Squid's access log so far (one per request it handled, written when it ends). */
    public List<String> accessLog() throws IOException {
        Path log = dir.resolve("access.log");
        return Files.exists(log) ? Files.readAllLines(log, StandardCharsets.UTF_8) : List.of();
    }

    private String output() {
        StringBuilder sb = new StringBuilder();
        for (String name : List.of("squid.out", "cache.log")) {
            try {
                sb.append(Files.readString(dir.resolve(name)));
            } catch (IOException e) {
                sb.append("(no ").append(name).append(")\n");
            }
        }
        return sb.toString();
    }

    @Override
    public void close() {
        // SIGTERM; shutdown_lifetime 0 lets it exit at once, and its helpers end with their stdin.
        process.destroy();
        try {
            if (!process.waitFor(15, TimeUnit.SECONDS)) {
                process.destroyForcibly();
                process.waitFor(5, TimeUnit.SECONDS);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            process.destroyForcibly();
        }
        try (var files = Files.walk(dir)) {
            files.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        } catch (IOException e) {
            // Left in the temp directory.
        }
    }
}
