package dev.egressproxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.egressproxy.testing.Origin;
import dev.egressproxy.testing.Processes;
import dev.egressproxy.testing.ProxyJar;
import dev.egressproxy.testing.ProxyProcess;
import dev.egressproxy.testing.RawClient;
import java.io.File;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The runnable jar as an operator uses it: {@code --check-config}, the shipped defaults,
 * environment overrides, the access log on stdout, a clean stop on SIGTERM, the
 * class-data-sharing training run, and a child proxy that outlives a rebuild of its jar.
 */
class JarIT {

    @TempDir
    Path dir;

    /** A copy of the built jar, so that a rebuild while the tests run cannot break a child ({@link ProxyJar}). */
    static String jar() {
        return ProxyJar.shared().toString();
    }

    static String java() {
        return Path.of(System.getProperty("java.home"), "bin", "java").toString();
    }

    @Test
    void checkConfigReportsEveryProblemWithWhereItIsAndExits2() throws Exception {
        Path bad = dir.resolve("bad.conf");
        Files.writeString(bad, """
                egress-proxy {
                  allowlist.hosts = ["registry.redhat.io", "*example.com"]
                  timeouts.conect = 5s
                }
                """);
        Processes.Result r = Processes.run(List.of(java(), "-jar", jar(), "--check-config", bad.toString()), null, 60);
        assertThat(r.exitCode()).isEqualTo(2);
        assertThat(r.output())
                .contains("egress-proxy.allowlist.hosts[1] (" + bad + ":2): '*example.com' is not a valid pattern; use '*.example.com'")
                .contains("egress-proxy.timeouts.conect (" + bad + ":3): unknown key; known keys there: connect, connect-attempt-delay, idle, request-head");
    }

    @Test
    void checkConfigOfTheShippedDefaultsListsTheRedHatPreset() throws Exception {
        Processes.Result r = Processes.run(List.of(java(), "-jar", jar(), "--check-config",
                Processes.projectRoot().resolve("config/egress-proxy.conf").toString()), null, 60);
        assertThat(r.exitCode()).as(r.output()).isZero();
        assertThat(r.output()).contains("listen 0.0.0.0:3128, admin 0.0.0.0:9128")
                .contains("  registry.redhat.io\n  registry.access.redhat.com\n  cdn.quay.io\n  cdn01.quay.io\n"
                        + "  cdn02.quay.io\n  cdn03.quay.io\n");
    }

    @Test
    void cdsTrainingBuildsAnArchiveThatTheNextStartMapsAndLogsGoWhereBuiltInLoggingSends() throws Exception {
        Path archive = dir.resolve("egress-proxy.jsa");
        File stdout = dir.resolve("stdout.log").toFile();
        File stderr = dir.resolve("stderr.log").toFile();
        Process training = new ProcessBuilder(java(), "-Xlog:disable", "-XX:ArchiveClassesAtExit=" + archive,
                "-jar", jar(), "--cds-training").redirectOutput(stdout).redirectError(stderr).start();
        assertThat(training.waitFor(120, TimeUnit.SECONDS)).isTrue();
        assertThat(training.exitValue()).as(Files.readString(stderr.toPath())).isZero();
        assertThat(Files.size(archive)).isPositive();

        // The application log: stderr, text, one line per event. The access log: stdout, the line
        // as formatted and nothing added, one per exchange of the training run.
        assertThat(Files.readString(stderr.toPath())).containsPattern(
                "(?m)^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z INFO  \\[main\\] d\\.e\\.server\\.ProxyServer - egress-proxy listening on 127\\.0\\.0\\.1:");
        List<String> access = Files.readAllLines(stdout.toPath()).stream().filter(l -> l.startsWith("id=")).toList();
        assertThat(access).hasSize(9).allSatisfy(l -> assertThat(l).matches("id=\\S+ client=127\\.0\\.0\\.1:\\d+ user=- method=.*"));
        assertThat(access).filteredOn(l -> l.contains("method=CONNECT target=localhost:")).hasSize(3)
                .allSatisfy(l -> assertThat(l).contains("status=200"));
        assertThat(Files.readString(stdout.toPath()))
                .contains("egress-proxy --cds-training: 3 rounds of tunnel, forward, refusal and admin requests done");

        // -Xshare:on makes the JVM refuse to start unless it maps the archive; the proxy's classes
        // then come from it. EGRESS_PROXY_LOG_LEVEL=WARN silences the application log's INFO lines.
        ProcessBuilder shared = new ProcessBuilder(java(), "-Xshare:on", "-XX:SharedArchiveFile=" + archive,
                "-Xlog:class+load=info:file=" + dir.resolve("classes.log"), "-jar", jar(), "--cds-training")
                .redirectOutput(stdout).redirectError(stderr);
        shared.environment().put("EGRESS_PROXY_LOG_LEVEL", "WARN");
        Process second = shared.start();
        assertThat(second.waitFor(120, TimeUnit.SECONDS)).isTrue();
        assertThat(second.exitValue()).as(Files.readString(stderr.toPath())).isZero();
        assertThat(Files.readString(dir.resolve("classes.log")))
                .contains("dev.egressproxy.server.ProxyServer source: shared objects file (top)")
                .contains("io.netty.channel.epoll.Native source: shared objects file (top)");
        assertThat(Files.readString(stderr.toPath())).doesNotContain("egress-proxy listening");
    }

    @Test
    void theShippedLogbackFileReplacesTheBuiltInConfigurationAndKeepsTheTwoStreams() throws Exception {
        File stdout = dir.resolve("stdout.log").toFile();
        File stderr = dir.resolve("stderr.log").toFile();
        Process p = new ProcessBuilder(java(), "-Dlogback.configurationFile="
                + Processes.projectRoot().resolve("config/logback.xml"), "-Dlogback.debug=true", "-jar", jar(), "--cds-training")
                .redirectOutput(stdout).redirectError(stderr).start();
        assertThat(p.waitFor(120, TimeUnit.SECONDS)).isTrue();
        assertThat(p.exitValue()).as(Files.readString(stderr.toPath())).isZero();
        // logback.debug prints Logback's own status lines (to stdout): Joran read the file, which
        // substituted EGRESS_PROXY_LOG_LEVEL's default, as only the XML file does.
        assertThat(Files.readString(stdout.toPath())).contains("DefaultJoranConfigurator.configure()")
                .contains("value \"INFO\" substituted for \"${EGRESS_PROXY_LOG_LEVEL:-INFO}\"")
                .contains("method=CONNECT target=localhost:");
        assertThat(Files.readString(stderr.toPath())).contains("INFO  [main] d.e.server.ProxyServer - egress-proxy listening")
                .doesNotContain("method=CONNECT");
    }

    @Test
    void shippedDefaultsRunRefuseOutsideTheAllowlistAndStopOnSigterm() throws Exception {
        int[] ports = Processes.twoFreePorts();
        int port = ports[0];
        int admin = ports[1];
        File stdout = dir.resolve("stdout.log").toFile();
        File stderr = dir.resolve("stderr.log").toFile();
        ProcessBuilder pb = new ProcessBuilder(java(), "-jar", jar()).redirectOutput(stdout).redirectError(stderr);
        Map<String, String> env = pb.environment();
        env.remove("EGRESS_PROXY_CONFIG");
        env.put("EGRESS_PROXY_HOST", "127.0.0.1");
        env.put("EGRESS_PROXY_PORT", Integer.toString(port));
        env.put("EGRESS_PROXY_ADMIN_HOST", "127.0.0.1");
        env.put("EGRESS_PROXY_ADMIN_PORT", Integer.toString(admin));
        env.put("EGRESS_PROXY_ACCESS_LOG_FORMAT", "json");
        env.put("EGRESS_PROXY_LOG_FORMAT", "json");
        Process proxy = pb.start();
        try {
            HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(2)).build();
            await().atMost(Duration.ofSeconds(30)).ignoreExceptions().until(() -> http.send(
                    HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + admin + "/readyz")).build(),
                    HttpResponse.BodyHandlers.ofString()).statusCode() == 200);

            // The JVM and process meters are bound after start-up, and a scrape waits for them.
            String scrape = http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + admin + "/metrics")).build(),
                    HttpResponse.BodyHandlers.ofString()).body();
            assertThat(scrape).contains("egress_proxy_build_info{").contains("jvm_memory_used_bytes")
                    .contains("process_files_open_files").contains("netty_allocator_memory_used");

            List<String> curl = new ArrayList<>(List.of("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                    "--max-time", "10", "-x", "http://127.0.0.1:" + port, "https://cdn04.quay.io/"));
            Processes.Result refused = Processes.run(curl, null, 30);
            assertThat(refused.output()).contains("403").contains("CONNECT tunnel failed, response 403");

            await().atMost(Duration.ofSeconds(10)).until(() -> Files.readString(stdout.toPath())
                    .contains("\"method\":\"CONNECT\",\"target\":\"cdn04.quay.io:443\",\"decision\":\"denied\""));
            // The status page and the JSON library travel in the jar.
            assertThat(http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + admin + "/status")).build(),
                    HttpResponse.BodyHandlers.ofString()).body()).contains("\"entries\" : 1", "\"requests\" : 1");
            assertThat(http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + admin + "/")).build(),
                    HttpResponse.BodyHandlers.ofString()).body()).contains("<script src=\"/status.js\" defer>");
            // Application logs as JSON lines, for log shippers.
            assertThat(Files.readAllLines(stderr.toPath())).anySatisfy(line -> assertThat(line)
                    .startsWith("{").contains("\"level\":\"INFO\"")
                    .contains("allowlist: 6 entries (presets redhat-registry)"));
        } finally {
            proxy.destroy();
            assertThat(proxy.waitFor(20, TimeUnit.SECONDS)).isTrue();
        }
        assertThat(Files.readString(stderr.toPath())).contains("egress-proxy stopping");
    }

    @Test
    void aTakenPortIsNamedAndTheProcessExits1() throws Exception {
        int[] ports = Processes.twoFreePorts();
        try (ServerSocket taken = new ServerSocket(ports[0], 50, InetAddress.getLoopbackAddress())) {
            Processes.Result r = Processes.run(List.of(java(), "-jar", jar(), "--config",
                    Processes.projectRoot().resolve("config/egress-proxy.conf").toString()), null, 60,
                    Map.of("EGRESS_PROXY_HOST", "127.0.0.1", "EGRESS_PROXY_PORT", Integer.toString(ports[0]),
                            "EGRESS_PROXY_ADMIN_HOST", "127.0.0.1", "EGRESS_PROXY_ADMIN_PORT", Integer.toString(ports[1])));
            assertThat(r.exitCode()).as(r.output()).isEqualTo(1);
            assertThat(r.output()).contains("egress-proxy could not start: cannot listen (proxy) on 127.0.0.1:"
                    + ports[0] + ": Address already in use");
        }
    }

    @Test
    void aChildProxyKeepsServingWhenTheJarItWasStartedFromIsRewritten() throws Exception {
        // The "original" is a copy of the build's jar, so that this test can ruin it safely.
        Path original = ProxyJar.copy(ProxyJar.built(), Files.createDirectory(dir.resolve("original")));
        try (Origin origin = Origin.http().respond("/ok", 200, "fine");
                ProxyProcess proxy = ProxyProcess.start(original, Files.createDirectory(dir.resolve("child")), List.of(),
                        List.of("-Xmx64m"), """
                          allowlist { presets = [], hosts = ["origin.test"] }
                          destinations.connect-to { "origin.test:80" = "127.0.0.1:%d" }
                        """.formatted(origin.port()))) {
            // A rebuild rewrites the jar in place: here it is cut to nothing, then 4 KiB of zeros.
            try (FileChannel jar = FileChannel.open(original, StandardOpenOption.WRITE)) {
                jar.truncate(0);
                jar.write(ByteBuffer.allocate(4096));
            }
            // Paths the child has not taken since start, whose classes it reads from its jar now:
            // a forwarded request, a refusal, the Prometheus scrape.
            try (RawClient c = new RawClient(proxy.address())) {
                c.send("GET http://origin.test/ok HTTP/1.1\r\nHost: origin.test\r\nConnection: close\r\n\r\n");
                assertThat(new String(c.readToEnd(), StandardCharsets.ISO_8859_1)).startsWith("HTTP/1.1 200").endsWith("fine");
            }
            try (RawClient c = new RawClient(proxy.address())) {
                c.send("CONNECT elsewhere.test:443 HTTP/1.1\r\nHost: elsewhere.test:443\r\n\r\n");
                assertThat(c.readHead().status()).isEqualTo(403);
            }
            assertThat(proxy.metric("egress_proxy_allowlist_entries")).isEqualTo(1.0);
            assertThat(proxy.isAlive()).isTrue();
            assertThat(proxy.log()).doesNotContain("NoClassDefFoundError", "ClassNotFoundException", "ZipException");
        }
    }
}
