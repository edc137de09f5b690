package dev.egressproxy.testing;

import static org.awaitility.Awaitility.await;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * The proxy jar run as its own process, for what only a process has: an open-file limit (started
 * under {@code prlimit}), a direct-memory size, its own log. Listens on loopback ports the caller
 * gives; {@link #start} returns once {@code /readyz} answers 200. It runs a copy of the jar in its
 * directory ({@link ProxyJar}), removed by {@link #close}, so that a rebuild of the jar meanwhile
 * cannot break it.
 */
public final class ProxyProcess implements AutoCloseable {

    private final Process process;
    private final Path jar;
    private final Path log;
    private final int port;
    private final int adminPort;
    private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(2)).build();

    private ProxyProcess(Process process, Path jar, Path log, int port, int adminPort) {
        this.process = process;
        this.jar = jar;
        this.log = log;
        this.port = port;
        this.adminPort = adminPort;
    }

    /**
     * Starts {@code prefix java jvmOptions -jar <dir>/egress-proxy.jar --config <dir>/egress-proxy.conf},
     * the jar a copy of the one the build made, with {@code config} (the body of the
     * {@code egress-proxy} block; listen and admin are added), its output in {@code dir}/proxy.log.
     */
    public static ProxyProcess start(Path dir, List<String> prefix, List<String> jvmOptions, String config)
            throws Exception {
        return start(ProxyJar.built(), dir, prefix, jvmOptions, config);
    }

    /** As {@link #start(Path, List, List, String)}, with a copy of {@code sourceJar}. */
    public static ProxyProcess start(Path sourceJar, Path dir, List<String> prefix, List<String> jvmOptions,
            String config) throws Exception {
        Path jar = ProxyJar.copy(sourceJar, dir);
        int[] ports = Processes.twoFreePorts();
        Path conf = dir.resolve("egress-proxy.conf");
        Files.writeString(conf, "egress-proxy {\n  listen { host = \"127.0.0.1\", port = " + ports[0] + " }\n"
                + "  admin { host = \"127.0.0.1\", port = " + ports[1] + " }\n  reload.watch = false\n"
                // The transport of the test run (the NIO and io_uring executions), unless config sets one.
                + "  transport = \"" + System.getProperty("egress.test.transport", "auto") + "\"\n" + config + "\n}\n");
        List<String> command = new ArrayList<>(prefix);
        command.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        command.addAll(jvmOptions);
        command.addAll(List.of("-jar", jar.toString(), "--config", conf.toString()));
        Path log = dir.resolve("proxy.log");
        ProcessBuilder pb = new ProcessBuilder(command).redirectErrorStream(true).redirectOutput(log.toFile());
        pb.environment().keySet().removeIf(k -> k.startsWith("EGRESS_PROXY_"));
        ProxyProcess p = new ProxyProcess(pb.start(), jar, log, ports[0], ports[1]);
        try {
            await().atMost(Duration.ofSeconds(30)).until(() -> {
                if (!p.process.isAlive()) {
                    throw new IllegalStateException("the proxy exited with " + p.process.exitValue() + ":\n" + p.log());
                }
                return p.status("/readyz") == 200;
            });
        } catch (RuntimeException | Error e) {
            p.close();
            throw e;
        }
        return p;
    }

    public InetSocketAddress address() {
        return new InetSocketAddress("127.0.0.1", port);
    }

    /** The admin listener. */
    public InetSocketAddress adminAddress() {
        return new InetSocketAddress("127.0.0.1", adminPort);
    }

    public boolean isAlive() {
        return process.isAlive();
    }

    /** Everything the process has printed so far. */
    public String log() throws IOException {
        return Files.readString(log, StandardCharsets.UTF_8);
    }

    private int status(String path) {
        try {
            return http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + adminPort + path)).build(),
                    HttpResponse.BodyHandlers.discarding()).statusCode();
        } catch (IOException e) {
            return -1;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return -1;
        }
    }

    /** The value of the Prometheus series {@code series} (name and labels exactly as exposed). */
    public double metric(String series) throws Exception {
        String text = http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + adminPort + "/metrics")).build(),
                HttpResponse.BodyHandlers.ofString()).body();
        for (String line : text.split("\n")) {
            if (line.startsWith(series + " ")) {
                return Double.parseDouble(line.substring(series.length() + 1).trim());
            }
        }
        throw new AssertionError("no series " + series + " in /metrics");
    }

    @Override
    public void close() throws Exception {
        process.destroy();
        if (!process.waitFor(15, TimeUnit.SECONDS)) {
            process.destroyForcibly().waitFor(5, TimeUnit.SECONDS);
        }
        Files.deleteIfExists(jar);
    }
}
