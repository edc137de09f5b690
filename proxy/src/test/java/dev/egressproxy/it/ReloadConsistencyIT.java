package dev.egressproxy.it;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressproxy.config.ConfigLoader;
import dev.egressproxy.config.ProxyConfig;
import dev.egressproxy.testing.Origin;
import dev.egressproxy.testing.RawClient;
import dev.egressproxy.testing.TcpServer;
import dev.egressproxy.testing.TestProxy;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

/**
 * A reload publishes the allowlist and the rest of the configuration together: a request is
 * decided and dialled under one configuration, never the allowlist of one and the
 * {@code connect-to} of the other.
 *
 * <p>Two configurations swap places as fast as {@link dev.egressproxy.server.ProxyServer#apply}
 * runs while clients open tunnels to both hosts. In A, {@code a.test} is allowed and pinned to its
 * origin, {@code b.test} is refused and pinned to a trap; in B the reverse. Each tunnel must be
 * refused or reach its own host's origin (which answers with its name); a tunnel decided under one
 * and dialled under the other would reach the trap.
 */
class ReloadConsistencyIT {

    private static final long STORM_NANOS = 3_000_000_000L;

    private static String settings(String allowed, int aPort, int bPort) {
        return "allowlist { presets = [], hosts = [\"" + allowed + ":80\"] }\n"
                + "destinations.connect-to {\n \"a.test:80\" = \"127.0.0.1:" + aPort + "\"\n"
                + " \"b.test:80\" = \"127.0.0.1:" + bPort + "\"\n}\n";
    }

    private static ProxyConfig full(String settings) throws Exception {
        return ConfigLoader.fromString("egress-proxy {\n listen { host = \"127.0.0.1\", port = 0 }\n"
                + " admin { host = \"127.0.0.1\", port = 0 }\n transport = \""
                + System.getProperty("egress.test.transport", "auto") + "\"\n" + settings + "}\n");
    }

    /** A server that writes {@code name} to every connection and closes it. */
    private static TcpServer named(String name) throws IOException {
        return TcpServer.of((s, server) -> {
            s.getOutputStream().write(name.getBytes(StandardCharsets.US_ASCII));
            s.getOutputStream().flush();
        });
    }

    @Test
    void everyTunnelIsDecidedAndDialledUnderOneConfiguration() throws Exception {
        try (TcpServer originA = named("A"); TcpServer originB = named("B"); TcpServer trap = named("trap");
                TestProxy proxy = TestProxy.start(settings("a.test", originA.port(), trap.port()))) {
            ProxyConfig a = full(settings("a.test", originA.port(), trap.port()));
            ProxyConfig b = full(settings("b.test", trap.port(), originB.port()));
            AtomicBoolean storming = new AtomicBoolean(true);
            AtomicInteger reloads = new AtomicInteger();
            Thread reloader = new Thread(() -> {
                while (storming.get()) {
                    proxy.server.apply(reloads.getAndIncrement() % 2 == 0 ? b : a);
                }
            }, "reload-storm");
            reloader.start();

            Map<String, AtomicInteger> outcomes = new ConcurrentHashMap<>();
            List<String> wrong = new CopyOnWriteArrayList<>();
            List<Throwable> errors = new CopyOnWriteArrayList<>();
            List<Thread> clients = new ArrayList<>();
            for (String host : List.of("a.test", "b.test")) {
                Thread t = new Thread(() -> {
                    String expected = host.equals("a.test") ? "A" : "B";
                    long end = System.nanoTime() + STORM_NANOS;
                    try {
                        while (System.nanoTime() < end) {
                            try (RawClient raw = new RawClient(proxy.address())) {
                                raw.send("CONNECT " + host + ":80 HTTP/1.1\r\nHost: " + host + ":80\r\n\r\n");
                                RawClient.Head head = raw.readHead();
                                String outcome;
                                if (head.status() == 200) {
                                    outcome = new String(raw.in().readAllBytes(), StandardCharsets.US_ASCII);
                                    if (!outcome.equals(expected)) {
                                        wrong.add(host + " reached " + outcome);
                                    }
                                } else {
                                    outcome = Integer.toString(head.status());
                                }
                                outcomes.computeIfAbsent(host + " " + outcome, k -> new AtomicInteger()).incrementAndGet();
                            }
                        }
                    } catch (Throwable e) {
                        errors.add(e);
                    }
                }, "client-" + host);
                t.start();
                clients.add(t);
            }
            for (Thread t : clients) {
                t.join();
            }
            storming.set(false);
            reloader.join();

            assertThat(errors).as("client errors").isEmpty();
            assertThat(wrong).as("tunnels dialled under another configuration than the one that allowed them; outcomes "
                    + outcomes + " over " + reloads.get() + " reloads").isEmpty();
            assertThat(trap.connections.get()).as("connections to the trap").isZero();
            // The storm really mixed both configurations into the traffic.
            assertThat(outcomes).containsKeys("a.test A", "a.test 403", "b.test B", "b.test 403");
        }
    }

    /**
     * A kept-alive upstream connection belongs to the configuration it was dialled under: after a
     * reload moves {@code connect-to}, the next request on the same client connection goes to the
     * new address, not down the connection to the old one.
     */
    @Test
    void aReloadedConnectToIsNotBypassedByAKeptAliveUpstream() throws Exception {
        try (Origin before = Origin.http().respond("/", 200, "before");
                Origin after = Origin.http().respond("/", 200, "after");
                TestProxy proxy = TestProxy.start(settings("a.test", before.port(), before.port()));
                RawClient raw = new RawClient(proxy.address())) {
            String get = "GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n";
            raw.send(get);
            RawClient.Head first = raw.readHead();
            assertThat(first.status()).isEqualTo(200);
            assertThat(new String(raw.readExactly(Integer.parseInt(first.header("content-length"))),
                    StandardCharsets.US_ASCII)).isEqualTo("before");

            proxy.server.apply(full(settings("a.test", after.port(), after.port())));
            raw.send(get);
            RawClient.Head second = raw.readHead();
            assertThat(second.status()).isEqualTo(200);
            assertThat(new String(raw.readExactly(Integer.parseInt(second.header("content-length"))),
                    StandardCharsets.US_ASCII)).as("the body of the request after the reload").isEqualTo("after");
            assertThat(before.seen).hasSize(1);
            assertThat(after.seen).hasSize(1);
        }
    }
}
