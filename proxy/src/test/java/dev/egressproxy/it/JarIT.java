package dev.egressproxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.egressproxy.testing.Processes;
import java.io.File;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The runnable jar as an operator uses it: {@code --check-config}, the shipped defaults,
 * environment overrides, the access log on stdout, and a clean stop on SIGTERM.
 */
class JarIT {

    @TempDir
    Path dir;

    static String jar() {
        return System.getProperty("egress.proxy.jar", "target/egress-proxy.jar");
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
                .contains("egress-proxy.timeouts.conect (" + bad + ":3): unknown key; known keys there: connect, idle, request-head");
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

            List<String> curl = new ArrayList<>(List.of("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                    "--max-time", "10", "-x", "http://127.0.0.1:" + port, "https://cdn04.quay.io/"));
            Processes.Result refused = Processes.run(curl, null, 30);
            assertThat(refused.output()).contains("403").contains("CONNECT tunnel failed, response 403");

            await().atMost(Duration.ofSeconds(10)).until(() -> Files.readString(stdout.toPath())
                    .contains("\"method\":\"CONNECT\",\"target\":\"cdn04.quay.io:443\",\"decision\":\"denied\""));
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
}
